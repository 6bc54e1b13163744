// Package scoped gives every unit of work (a request, an RPC, a job, a
// test) its own database session, created on first use and ended exactly
// once when the unit ends, the Go form of SQLAlchemy's scoped_session.
// There are no thread-locals: the unit of work travels in a
// [context.Context].
//
// # Usage
//
// Wrap any session factory (a *sql.Tx, a *sql.Conn, a pgx.Tx, a gorm
// transaction) in a [ScopedSession], once:
//
//	var txs = scoped.New(scopedsql.Tx(db, nil))
//
// Run a unit of work; it commits when fn returns nil and rolls back
// otherwise:
//
//	err := scoped.Run(ctx, func(ctx context.Context) error {
//		tx, err := txs.Current(ctx) // the same *sql.Tx for the whole unit
//		if err != nil {
//			return err
//		}
//		_, err = tx.ExecContext(ctx, "UPDATE ...")
//		return err
//	})
//
// A unit that never calls Current opens no transaction and takes no
// connection. Run inside a unit of work nests: the inner unit is a
// savepoint of the outer transaction, rolled back alone when it fails, so
// a service function behaves the same called from a handler, a job or
// another service function (see [WithNesting]; [Independent] for a unit of
// its own). [WithRetry] re-runs a root unit on serialization failures.
//
// Where a unit of work does not fit one function, begin and end a scope by
// hand:
//
//	ctx, scope := scoped.Begin(ctx)
//	defer scope.Remove() // rolls back whatever was not committed
//	...
//	return scope.Commit()
//
// The scopedhttp, scopedgrpc, scopedconnect and scopedriver packages do
// that per request, RPC or job, committing before the client learns the
// outcome. [Bind] puts a ScopedSession in a context so that code far from
// where it was created can use the package-level [Current].
//
// # Ending
//
// [Scope.Remove] rolls back and closes every session of the scope, newest
// first; [Scope.Commit] commits them in creation order first. Both run
// each session's teardown exactly once, go on past failures, join the
// errors and leave nothing registered; a commit error says what it means
// for the work ([ErrNotCommitted], [ErrPartiallyCommitted],
// [ErrCommittedCloseFailed], [ErrCommitUnknown]). How a session ends is
// detected from its type (*sql.Tx, *sql.Conn, io.Closer, pgx-style
// Commit(ctx) and Rollback(ctx), Release()) or set with [WithCommit],
// [WithRollback] and [WithClose]; [WithTeardownTimeout] bounds it.
// Teardown runs with the scope's values but never with a cancelled
// context. Every teardown error reaches the hook set by
// [WithTeardownErrorHook] (by default, log/slog), and every step of a
// session the hook set by [WithEventHook].
//
// If a scope's context is cancelled before Remove (the client went away),
// its safety net rolls back at once the sessions that may be ended from
// another goroutine, all but those created [WithoutSafetyNet]; defer
// scope.Remove() remains the rule. Work that outlives a request gets its
// own scope from [Detach]. After a scope has ended, Current returns
// [ErrScopeClosed] rather than creating a session that no one would end.
// [Track] (and scopedtest.CheckScopes) finds scopes a test forgot to end.
//
// # Scope functions
//
// By default sessions are keyed on the scope from Begin. [WithScopeFunc]
// keys them on anything else, such as a tenant ([ContextValue]); such
// sessions are shared by every scope that maps to the key and live until
// [ScopedSession.Remove] or [ScopedSession.Close].
//
// # Concurrency
//
// A ScopedSession and a Scope are safe for concurrent use. Concurrent first
// calls to Current in one scope run the factory once; the others wait for
// it (a factory that asks for its own session gets [ErrReentrant]).
// Looking up an existing session takes no lock. No factory, teardown or
// hook runs while a lock of this package is held, and no goroutine is
// started per scope. The session itself is as safe for concurrent use as
// its type is: a *sql.Tx is, a pgx.Tx is not.
//
// # Layout
//
// session.go holds ScopedSession: New, Current (its lock-free hit path and
// the single flight of a first call), the creation of a session and the
// other methods. scope.go holds Scope: Begin, Detach, the scope's
// immutable list of sessions and the one mutex that guards it, ending a
// scope, its contexts. net.go is the safety net (and the bound it lends
// to an adapter's begin); teardown.go how a session ends and what the
// outcome means; nest.go child scopes; run.go Run; keyed.go ScopeFunc and
// the keyed store; observe.go options, events, Stats and Track.
package scoped
