// Package scoped gives every request, job or test its own database
// session, created on first use and ended exactly once when the scope
// ends, the Go form of SQLAlchemy's scoped_session. There are no
// thread-locals: the scope travels in a [context.Context].
//
// # Usage
//
// Wrap any session factory (a *sql.Tx, a *sql.Conn, a pgx.Tx, a gorm
// transaction) in a [ScopedSession], once:
//
//	var users = scoped.New(func(ctx context.Context) (*sql.Tx, error) {
//		return db.BeginTx(ctx, nil)
//	})
//
// Begin a scope where a unit of work starts, and end it where it ends:
//
//	ctx, scope := scoped.Begin(ctx)
//	defer scope.Remove() // rolls back whatever was not committed
//	...
//	tx, err := users.Current(ctx) // the same *sql.Tx for the whole scope
//	...
//	return scope.Commit()
//
// A scope that never calls Current opens no transaction and takes no
// connection. The scopedhttp package begins and ends one scope per HTTP
// request and commits according to the response status, before the status
// line is sent; scopedsql and scopedpgx provide the factories.
//
// [Bind] puts a ScopedSession in a context so that code far from where it
// was created can use the package-level [Current]:
//
//	tx, err := scoped.Current[*sql.Tx](ctx)
//
// # Ending
//
// [Scope.Remove] rolls back and closes every session of the scope, newest
// first; [Scope.Commit] commits them in creation order first. Both run
// each session's teardown exactly once, go on past failures, join the
// errors and leave nothing registered. How a session ends is detected from
// its type (*sql.Tx, *sql.Conn, io.Closer, pgx-style Commit(ctx) and
// Rollback(ctx), Release()) or set with [WithCommit], [WithRollback] and
// [WithClose]. Teardown runs with the scope's values but never with an
// already cancelled context, so a request whose client went away still
// rolls back cleanly. Every teardown error also reaches the hook set by
// [WithTeardownErrorHook] (by default, log/slog).
//
// If a scope's context is cancelled before Remove, the scope is removed
// anyway, on another goroutine (the safety net); defer scope.Remove()
// remains the rule. Callers that always end their scopes themselves use
// [BeginWithoutSafetyNet], and session types that must never be ended
// while a query may still run on them are created [WithoutSafetyNet].
// Work that outlives a request gets its own scope from [Detach]. After a scope has
// ended, Current returns [ErrScopeClosed] rather than creating a session
// that no one would end.
//
// # Scope functions
//
// By default sessions are keyed on the scope token from Begin. [WithScopeFunc]
// keys them on anything else, such as a tenant ([ContextValue]); such
// sessions are shared by every scope that maps to the key and live until
// [ScopedSession.Remove] or [ScopedSession.Close].
//
// # Concurrency
//
// A ScopedSession and a Scope are safe for concurrent use. Concurrent first
// calls to Current in one scope run the factory once; the others wait for
// it. Looking up an existing session takes no lock. No factory, teardown
// or hook runs while a lock of this package is held, and no goroutine is
// started per scope. The session itself is as safe for concurrent use as
// its type is: a *sql.Tx is, a pgx.Tx is not.
package scoped
