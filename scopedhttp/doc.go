// Package scopedhttp runs every HTTP request in its own [scoped.Scope]
// and commits it, or not, before the response's status line leaves the
// server.
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
// no transaction.
//
// # Commit modes
//
// [Manual] (the default) commits nothing: the handler commits what it
// wants and everything else is rolled back when it returns. [Autocommit]
// commits when the status is 2xx, [AutocommitIncludeRedirect] on 2xx and
// 3xx, and [WithCommitPolicy] takes any func(status int) bool. Any other
// status, a panic, a hijacked connection and a request whose context ended
// before the commit point roll back.
//
// # The commit point
//
// The commit point is the handler's first WriteHeader (other than a 1xx),
// Write, ReadFrom, Flush or Hijack, or its return if it wrote nothing (an
// implicit 200). The commit runs there, before anything reaches the
// client. If it fails, the client gets the error handler's response (by
// default 500, see [WithErrorHandler]) instead of the status the handler
// asked for, and what the handler writes afterwards is discarded: Write
// returns [ErrCommitFailed]. A client never sees a 2xx for changes that
// were not committed.
//
// In the automatic modes the scope ends at the commit point: a handler
// that asks for a session afterwards (while streaming a body, say) gets
// [scoped.ErrScopeClosed], never a session whose writes no one would
// commit. A streaming handler does its database work before its first
// write; if it must write to the database while streaming, it uses Manual
// mode and commits itself, or starts its own scope with [scoped.Begin]
// (or [scoped.Detach] for work that outlives the request).
//
// # Panics
//
// A panic rolls back the scope and goes on, unrecovered and with its
// stack, to the server or to a recovery middleware outside this one. After
// the commit point a panic cannot undo the commit.
//
// # Optional interfaces
//
// The wrapped ResponseWriter offers [http.Flusher], [http.Hijacker] and
// [io.ReaderFrom] exactly when the server's writer does, and Unwrap for
// [http.ResponseController].
package scopedhttp
