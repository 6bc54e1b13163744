// Package scopedconnect runs every Connect call (connectrpc.com/connect)
// in its own [scoped.Scope] and commits it, or not, before the response or
// the end of the stream leaves the server, under all three protocols a
// Connect handler serves: Connect, gRPC and gRPC-Web.
//
// # Usage
//
//	users := scoped.New(scopedsql.Tx(db, nil))
//	path, handler := userv1connect.NewUserServiceHandler(svc,
//		connect.WithRecover(onPanic),
//		connect.WithInterceptors(scopedconnect.NewInterceptor(
//			scopedconnect.WithCommitMode(scopedconnect.Autocommit),
//			scopedconnect.Bind(users),
//		)),
//	)
//
// Handlers get the call's session with users.Current(ctx) or
// scoped.Current[*sql.Tx](ctx); a call that never asks opens no
// transaction.
//
// # Why not scopedhttp
//
// The gRPC and gRPC-Web protocols answer HTTP 200 to a call that failed
// and carry the error in a trailer, so an HTTP middleware that commits on
// 2xx would commit a handler that wrote and then returned an error. The
// interceptor decides on the handler's error itself.
//
// # Commit modes
//
// [Manual] (the default) commits nothing: the handler commits what it
// wants and everything else is rolled back when it returns. [Autocommit]
// commits when the handler returns no error; [WithCommitPolicy] takes any
// func(connect.Code) bool (the code is [OK] for no error). Any other
// outcome, a panic, and a call whose context ended (client gone, deadline
// passed) before the commit roll back.
//
// # The commit point
//
// A unary call commits after its handler returned and before the response
// is written; a streaming call commits when its handler returned, before
// the end of the stream (the gRPC trailers, or Connect's end-of-stream
// message). If the commit fails, the call ends with the error handler's
// error instead ([DefaultErrorHandler]: CodeAborted for a serialization
// failure or deadlock, CodeDeadlineExceeded for a passed deadline,
// CodeInternal otherwise), so a client never sees success for changes that
// were not saved. Messages a streaming handler already sent stay sent and
// are followed by that error; a stream that must commit before it sends
// commits by hand.
//
// # Client gone
//
// The scope keeps the core's safety net (see [scoped.Scope]): when the
// client cancels or the deadline passes, the sessions that may be ended
// from another goroutine are rolled back at once. Sessions created
// [scoped.WithoutSafetyNet] (a pinned pgx connection) are ended when the
// handler returns.
//
// # Panics
//
// A panic rolls back the scope and goes on, unrecovered, to connect's
// recover option (given before the interceptor) or to net/http.
package scopedconnect
