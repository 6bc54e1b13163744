// Package scopedhttp runs every HTTP request in its own [scoped.Scope] and,
// in the automatic modes, commits it when the handler has returned and
// before the response leaves, so that a client never gets a 2xx for work
// that was not saved.
//
//	txs := scopedsql.NewTx(db, nil) // one *sql.Tx per request, begun on first use
//	mw := scopedhttp.Middleware(
//		scopedhttp.WithCommitMode(scopedhttp.Autocommit), // commit on 2xx
//		scopedhttp.Bind(txs),                             // scoped.Current[*sql.Tx](ctx) in handlers
//	)
//	http.ListenAndServe(":8080", mw(mux))
//
// A handler asks for the request's session with txs.Current(r.Context());
// a request that never asks opens nothing.
//
// Commit modes: [Manual] (the default: the handler commits, everything
// else is rolled back), [Autocommit] (2xx), [AutocommitIncludeRedirect]
// (2xx and 3xx), or any [WithCommitPolicy]. A panic, a hijacked connection
// and a request whose context ended before the commit roll back.
//
// The response (status, headers, body) is held until the commit, in a
// pooled buffer of up to [WithBufferLimit] bytes; if the commit fails the
// client gets the error handler's answer instead ([DefaultErrorHandler]:
// 500 saying whether anything was saved, 503 with Retry-After for a
// conflict the client may retry). A bigger body, a Flush or a Hijack
// streams; a streamed response whose commit fails is aborted (its
// connection reset where the body ends with the connection: HTTP/1.0,
// Transfer-Encoding: identity). A HEAD, 204 or 304 response, complete
// once its headers are out, stays held however much body its handler
// writes or flushes.
//
// [WithRetry] runs a request again in a fresh scope when its commit, or a
// scoped.Run with scoped.WithRetry inside it, fails with a serialization
// failure or deadlock (body replayed, held response discarded, never after
// anything was streamed or saved). A conflict that a statement the handler
// runs itself reports (every MariaDB deadlock, many PostgreSQL
// serialization failures) is the handler's error, not retried: run that
// work in such a Run. [WithTimeout] bounds a request and
// rolls it back at its deadline. [ReadOnlySafeMethods] makes GET and HEAD
// units read-only. Hooks registered with scoped.OnCommit and
// scoped.OnRollback run after the response has left: in the middleware
// over HTTP/1 with a Content-Length, otherwise (HTTP/2, a streamed body,
// declared trailers) on a goroutine of their own once the middleware has
// returned, since only then does the response end; after a panic, on a
// goroutine of their own once the recoverer has answered.
//
// The guide: docs/http.md in the repository.
package scopedhttp
