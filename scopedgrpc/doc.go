// Package scopedgrpc runs every gRPC call in its own [scoped.Scope] and
// commits it, or not, before the response or the final status leaves the
// server, so that a client never sees OK for work that was not saved.
//
//	txs := scopedsql.NewTx(db, nil)
//	opts := []scopedgrpc.Option{
//		scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), // commit when the handler returns no error
//		scopedgrpc.Bind(txs),                             // scoped.Current[*sql.Tx](ctx) in handlers
//	}
//	srv := grpc.NewServer(
//		grpc.StatsHandler(scopedgrpc.StatsHandler()), // unit hooks after the response
//		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(), scopedgrpc.UnaryServerInterceptor(opts...)),
//		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(), scopedgrpc.StreamServerInterceptor(opts...)),
//	)
//
// A handler asks for the call's session with txs.Current(ctx); a call that
// never asks opens nothing. [Manual] (the default) commits nothing but what
// the handler commits; [Autocommit] commits when the handler returned no
// error; [WithCommitPolicy] decides by status code. A failed commit
// replaces the outcome: Aborted for a serialization failure or deadlock,
// DeadlineExceeded past the deadline, Internal otherwise
// ([DefaultErrorHandler], [WithErrorHandler]). A panic, a cancelled call
// and a passed deadline roll back. [WithRetry] runs a unary call again in a
// fresh scope after a retryable failure; streams are never retried.
//
// Put the interceptors inside a recovery interceptor, so that a panic rolls
// back here first. Without [StatsHandler], scoped.OnCommit hooks run at the
// commit point, before the response is sent.
//
// The guide: docs/rpc.md in the repository.
package scopedgrpc
