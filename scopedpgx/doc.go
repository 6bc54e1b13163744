// Package scopedpgx gives every scope of package scoped its own pgx
// transaction, or its own pinned connection, from a [pgxpool.Pool]: begun
// on first use, ended exactly once with the scope, never leaving a
// connection acquired, even when the request's context is cancelled in the
// middle of a query.
//
//	txs := scopedpgx.NewTx(pool, pgx.TxOptions{}) // once, next to the pool
//	mw := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))
//
//	func getUser(w http.ResponseWriter, r *http.Request) {
//		tx, err := scoped.Current[pgx.Tx](r.Context()) // or txs.Current
//		...
//		err = tx.QueryRow(r.Context(), "SELECT name FROM users WHERE id = $1", id).Scan(&name)
//	}
//
// The round trip is the cost on a network, and [NewTx] spends as few as
// the work allows: BEGIN travels in one pipeline with the unit's first
// statement, a unit that runs nothing sends nothing (no BEGIN, no COMMIT),
// and per-unit setup (row-level security, [StatementTimeout]) rides in the
// same pipeline. A COMMIT whose answer was lost is resolved by asking the
// server on another connection (committed, aborted, or
// scoped.ErrCommitUnknown); a BEGIN whose connection was lost is sent again
// on another. [WithEagerBegin] and [WithoutVerifiedCommit] turn these off.
//
// A scope ends its transaction: in Autocommit mode a handler does not call
// tx.Commit itself. A pgx.Tx serves one call at a time, and a scope ended
// by its safety net never races a query in flight.
//
// [NewConn] pins a *pgxpool.Conn for the whole scope (SET, temporary
// tables, advisory locks, LISTEN), reset with DISCARD ALL before it goes
// back to the pool; it has no safety net, so end its scope with defer.
//
// [WithReplicas] sends read-only units to streaming replicas, with
// read-your-writes: [CommitPosition], [WithReadAfter], and over HTTP
// [ReadYourWrites]. [Retryable] classifies serialization failures and
// deadlocks for retries. [NewDBTX] serves sqlc's DBTX. Package
// scopedpgxtest gives tests a pool whose changes are rolled back.
//
// The guides: docs/pgx.md and docs/replicas.md in the repository.
package scopedpgx
