// Package scoped gives every unit of work — an HTTP request, an RPC, a job,
// a test — its own database session, carried in its [context.Context]:
// created on first use, shared by everything the unit calls, and committed
// or rolled back exactly once when the unit ends.
//
//	txs := scopedsql.NewTx(db, nil) // a *scoped.ScopedSession[*sql.Tx]
//
//	err := scoped.Run(ctx, func(ctx context.Context) error {
//		tx, err := txs.Current(ctx) // BEGIN here, once per unit
//		if err != nil {
//			return err
//		}
//		... // everything called with ctx gets the same tx
//		return scoped.OnCommit(ctx, func(context.Context) { notify() })
//	})
//
// Run commits when fn returns nil and rolls back on an error or a panic.
// A Run inside another unit is a savepoint of its transaction; [Independent]
// gives it one of its own; [WithRetry] runs a root unit again after a
// serialization failure. [OnCommit] and [OnRollback] run work once the
// outcome is known. Where one function does not fit, [Begin] a scope and
// end it with [Scope.Commit] or a deferred [Scope.Remove]; [Detach] starts a
// scope for a goroutine that outlives its request. A scope whose context is
// cancelled is rolled back by its safety net.
//
// [New] wraps any factory; *sql.Tx, *sql.Conn, io.Closer and pgx-style
// transactions end by themselves, other types with [WithCommit],
// [WithRollback], [WithClose]. A commit's error says what was saved:
// [ErrNotCommitted], [ErrPartiallyCommitted], [ErrCommittedCloseFailed],
// [ErrCommitUnknown]. [WithEventHook] and [ScopedSession.Stats] observe
// every session. scopedhttp, scopedgrpc, scopedconnect and scopedriver make
// each request, call or job a unit; scopedsql and scopedpgx make sessions;
// scopedtest isolates tests. This package imports only the standard library.
package scoped
