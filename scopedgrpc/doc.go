// Package scopedgrpc runs every gRPC call in its own [scoped.Scope] and
// commits it, or not, before the response or the final status leaves the
// server.
//
// # Usage
//
//	users := scoped.New(scopedsql.Tx(db, nil))
//	opts := []scopedgrpc.Option{
//		scopedgrpc.WithCommitMode(scopedgrpc.Autocommit),
//		scopedgrpc.Bind(users),
//	}
//	srv := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(scopedgrpc.UnaryServerInterceptor(opts...)),
//		grpc.ChainStreamInterceptor(scopedgrpc.StreamServerInterceptor(opts...)),
//	)
//
// Handlers get the call's session with users.Current(ctx) or
// scoped.Current[*sql.Tx](ctx); a call that never asks opens no
// transaction.
//
// # Commit modes
//
// [Manual] (the default) commits nothing: the handler commits what it
// wants and everything else is rolled back when it returns. [Autocommit]
// commits when the handler returns no error; [WithCommitPolicy] takes any
// func(codes.Code) bool. Any other outcome, a panic, and a call whose
// context ended (client gone, deadline passed) before the commit roll back.
//
// # The commit point
//
// A unary call commits after its handler returned and before the
// response is sent; a streaming call commits when its handler returned,
// before the final status. If the commit fails, the call ends with the
// error handler's status instead ([DefaultErrorHandler]: Aborted for a
// serialization failure or deadlock, DeadlineExceeded for a passed
// deadline, Internal otherwise), so a client never sees OK for changes that
// were not saved. Messages a streaming handler already sent stay sent and
// are followed by that status; a stream that must commit before it sends
// commits by hand.
//
// # Client gone
//
// The scope keeps the core's safety net (see [scoped.Scope]): when the
// client cancels or the deadline passes, the sessions that may be ended
// from another goroutine are rolled back at once, and a handler that goes
// on using them gets the driver's errors. Sessions created
// [scoped.WithoutSafetyNet] (a pinned pgx connection) are ended when the
// handler returns.
//
// # Panics
//
// A panic rolls back the scope and goes on, unrecovered, to a recovery
// interceptor outside this one (go-grpc-middleware's recovery turns it
// into a status) or to the server.
package scopedgrpc
