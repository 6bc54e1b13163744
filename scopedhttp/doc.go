// Package scopedhttp runs every HTTP request in its own [scoped.Scope]
// and, in the automatic modes, commits it when the handler has finished,
// before anything but a 1xx of its response leaves the server.
//
// # Usage
//
//	users := scoped.New(scopedsql.Tx(db, nil))
//	mw := scopedhttp.Middleware(
//		scopedhttp.WithCommitMode(scopedhttp.Autocommit),
//		scopedhttp.Bind(users),
//	)
//	http.ListenAndServe(":8080", mw(mux))
//
// Handlers get the request's session with users.Current(r.Context()) or
// scoped.Current[*sql.Tx](r.Context()); a request that never asks opens
// no transaction. One middleware binds one ScopedSession per session type
// ([Middleware] panics on two): for two databases, give each its own
// session type, or bind one and call the other's Current directly.
//
// # Commit modes
//
// [Manual] (the default) commits nothing: the handler commits what it
// wants and everything else is rolled back when it returns; a 2xx or 3xx
// answered over sessions it left uncommitted is reported
// ([WithUncommittedHook]). [Autocommit] commits when the status is 2xx,
// [AutocommitIncludeRedirect] on 2xx and 3xx, and [WithCommitPolicy]
// takes any func(status int) bool. Any other status, a panic, a hijacked
// connection and a request whose context ended before the commit roll
// back. A gRPC or gRPC-Web response (Content-Type application/grpc*)
// answers HTTP 200 whatever happened; the automatic modes commit it only
// when its Grpc-Status is 0, and roll back (and abort) one whose status
// they cannot read: use scopedgrpc or scopedconnect for RPCs.
//
// # The commit point: when the handler returns
//
// In the automatic modes the response (status, headers, body) is held in
// a pooled buffer while the handler runs; 1xx responses such as 103 Early
// Hints go out at once. So a handler may set its status first, write as
// it reads rows, and run more statements after its first write: all of it
// is committed, or rolled back, together, by the status it set. When the
// handler returns, the middleware commits and only then sends the
// response. If the commit fails, the client gets the error handler's
// response (by default 500, or 503 for a conflict the client may retry,
// see [DefaultErrorHandler]) with none of the
// handler's body or headers; a close that fails after a successful commit
// ([scoped.ErrCommittedCloseFailed]) is no failure: the work is saved,
// the handler's response goes out and the close error reaches the
// session's teardown hook.
//
// # Streaming
//
// A body larger than the buffer ([WithBufferLimit], default 1 MiB), a
// Flush (http.Flusher or http.ResponseController) or a Hijack starts
// streaming: the status, headers and what is held go out, and the rest
// follows as the handler writes it. The commit still happens when the
// handler returns, and if it fails (or the request ended before it) the
// response is aborted with panic(http.ErrAbortHandler), after the
// rollback: net/http closes an HTTP/1.1 connection before the final chunk
// and resets an HTTP/2 stream, so the client sees a broken response,
// never a complete 2xx. For that, a streaming response loses its
// Content-Length (HTTP/1.1 sends it chunked). A recovery middleware
// outside this one must let http.ErrAbortHandler through (chi's
// middleware.Recoverer does); an HTTP/1.0 client, whose body ends with
// the connection, cannot tell an abort from the end.
//
// A stream that lasts as long as the client listens (server-sent events)
// cannot wait for a commit at its end: the handler commits by hand first
// (Scope.Commit ends the scope, after which Current returns
// [scoped.ErrScopeClosed]; ScopedSession.Commit commits that session, and
// a session asked for afterwards is a new one, decided at the return),
// then streams; see the example.
//
// # Retries
//
// Under SERIALIZABLE isolation, and on CockroachDB-style engines, units
// of work fail routinely on conflicts with concurrent ones (serialization
// failures, deadlocks), and the cure is to run them again. A
// [scoped.Run] inside a request cannot run again on its own (the
// request's transaction is aborted by then); with [scoped.WithRetry] it
// asks its root to. [WithRetry] makes the middleware that root: a request
// whose commit failed retryably, or inside which such a unit asked, is
// run again in a fresh scope, its held response discarded and its body
// replayed, before anything of it reaches the client:
//
//	mw := scopedhttp.Middleware(
//		scopedhttp.WithCommitMode(scopedhttp.Autocommit),
//		scopedhttp.WithRetry(5, scopedsql.Retryable),
//		scopedhttp.Bind(users),
//	)
//
// Without WithRetry such a unit's error goes to the handler as it is, and
// a warning is logged once per call site. A retryable commit failure that
// reaches the client (no WithRetry, or the last attempt) is answered 503
// with Retry-After, so that the client can tell "try again" from a
// failure.
//
// # Requests that end early
//
// Each scope is begun with [scoped.Begin]: when the client goes away, or
// the request's deadline ([WithTimeout]) passes, the core's safety net
// rolls back at once the sessions that may be ended from another
// goroutine (a *sql.Tx, a scopedpgx.NewTx session), releasing their locks
// and connections while the handler may still run. Sessions created
// [scoped.WithoutSafetyNet] (a pinned pgx connection, scopedpgx.NewConn)
// are not touched then: they are rolled back and released when the
// handler returns. A request whose context ended before the commit is
// never committed: the client, if still there, gets 503 (deadline) or 500
// saying nothing was saved.
//
// A handler that committed its scope by hand keeps its answer even if
// the request's context ends afterwards: the middleware tells a scope the
// safety net rolled back ([scoped.ErrScopeCancelled]) from one its
// handler ended.
//
// # Panics
//
// A panic rolls back the scope, drops the held response and goes on,
// unrecovered and with its stack, to the server or to a recovery
// middleware outside this one.
//
// # Optional interfaces
//
// The wrapped ResponseWriter offers [http.Flusher], [http.Hijacker] and
// [io.ReaderFrom] exactly when the server's writer does, and Unwrap for
// [http.ResponseController] (deadlines, full duplex). Writing to the
// writer Unwrap returns bypasses the held response.
package scopedhttp
