// Package scopedsql makes database/sql sessions for package scoped: a
// transaction or a pinned connection per scope, and named engines opened
// from configuration. It works with any driver; it is tested against
// PostgreSQL (github.com/lib/pq) and MariaDB (github.com/go-sql-driver/mysql).
//
//	txs := scopedsql.NewTx(db, nil) // once, at start-up
//
//	err := scoped.Run(ctx, func(ctx context.Context) error {
//		tx, err := txs.Current(ctx) // BEGIN here, on first use only
//		if err != nil {
//			return err
//		}
//		_, err = tx.ExecContext(ctx, "UPDATE ...")
//		return err // nil commits, an error rolls back
//	}, scoped.WithRetry(5, scopedsql.Retryable))
//
// Under scopedhttp every request is such a unit. A unit run inside another
// is a SAVEPOINT of its transaction.
//
//   - [NewTx] takes per-transaction setup ([WithSetup], [StatementTimeout]:
//     row-level security, SET LOCAL, run right after BEGIN, failing closed)
//     and per-unit options set on the unit's context ([WithTxOptions],
//     [WithDeferrable]; too late inside a scope: [ErrTxOptionsLate]).
//   - [WithReplicas] (PostgreSQL) runs read-only units on streaming
//     replicas, skipping one that is down or lags ([WithMaxReplicaLag]);
//     [WithReadAfter] and [CommitPosition] carry a client's commit
//     position so that it reads its own writes ([ReadYourWrites]: in a
//     cookie).
//   - [NewConn] pins one *sql.Conn per scope (SET, advisory locks,
//     temporary tables). Its end never waits for an unclosed *sql.Rows
//     ([ErrConnInUse]), and it goes back to the pool without its session
//     state (DISCARD ALL on PostgreSQL, closed elsewhere;
//     [WithoutSessionReset] to opt out).
//   - A BEGIN that meets a connection the server already closed is retried
//     on another one. [VerifiedCommit] (PostgreSQL) asks the server what
//     became of a COMMIT whose connection was lost.
//   - [Retryable] classifies serialization failures and deadlocks for
//     retries.
//   - [Open] opens named pools from configuration; [NewDBTX] serves sqlc.
//
// database/sql's Commit and Rollback take no context: bound them at the
// driver (go-sql-driver/mysql's readTimeout and writeTimeout; a dialer with
// TCP_USER_TIMEOUT for lib/pq). The guide: docs/sql.md in the repository.
package scopedsql
