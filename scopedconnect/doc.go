// Package scopedconnect runs every Connect call (connectrpc.com/connect)
// in its own [scoped.Scope] and commits it, or not, before the response or
// the end of the stream leaves the server, under all three protocols a
// Connect handler serves: Connect, gRPC and gRPC-Web.
//
//	txs := scopedsql.NewTx(db, nil)
//	path, handler := userv1connect.NewUserServiceHandler(svc,
//		connect.WithRecover(onPanic), // first, so that a panic rolls back here
//		connect.WithInterceptors(scopedconnect.NewInterceptor(
//			scopedconnect.WithCommitMode(scopedconnect.Autocommit),
//			scopedconnect.Bind(txs),
//		)),
//	)
//	mux.Handle(path, scopedconnect.Handler(handler)) // unit hooks after the response
//
// A handler asks for the call's session with txs.Current(ctx); a call that
// never asks opens nothing. [Manual] (the default) commits nothing but what
// the handler commits; [Autocommit] commits when the handler returned no
// error; [WithCommitPolicy] decides by code. A failed commit replaces the
// outcome: Aborted for a serialization failure or deadlock,
// DeadlineExceeded past the deadline, Internal otherwise
// ([DefaultErrorHandler], [WithErrorHandler]). [WithRetry] runs a unary
// call again in a fresh scope after a retryable failure; streams are never
// retried. Hooks registered with scoped.OnCommit and scoped.OnRollback run
// once the response has been sent, never delaying the client, when the
// handler is wrapped in [Handler]; without it they run when the scope
// ends, at the commit point, before the response is written: connect-go
// runs nothing of an interceptor after the response.
//
// Use this interceptor rather than scopedhttp for Connect handlers: the
// gRPC and gRPC-Web protocols answer HTTP 200 to a failed call and carry
// the error in a trailer, so a status-based HTTP commit would commit it.
//
// The guide: docs/rpc.md in the repository.
package scopedconnect
