// Package scopedpgxtest gives each test a pgx database whose every change
// is rolled back when the test ends: scopedtest.IsolatedDB for pgxpool
// users. Scopes, transactions and commits inside the test work as in
// production, and the test still leaves nothing behind.
//
// # Usage
//
// Wire the code under test with the [DB] and its [DB.NewTx] where
// production wires the pool and [scopedpgx.NewTx]:
//
//	func TestSignup(t *testing.T) {
//		db := scopedpgxtest.Isolate(t, pool) // pool: the suite's *pgxpool.Pool
//		txs := db.NewTx()                    // production: scopedpgx.NewTx(pool, pgx.TxOptions{})
//		queries := sqlcdb.New(scopedpgx.NewDBTX(db, txs))
//
//		err := scoped.Run(t.Context(), func(ctx context.Context) error {
//			_, err := queries.CreateUser(ctx, "ada") // in the scope's transaction
//			return err
//		}) // committed: visible to the rest of the test
//		...
//	} // rolled back here: the users table is as it was
//
// A DB has the methods of a *pgxpool.Pool that run statements (Exec,
// Query, QueryRow, SendBatch, CopyFrom, Begin, BeginTx, Ping), so code
// that takes an interface of them takes a DB, such as
// [scopedpgx.NewDBTX]'s fallback and sqlc's generated New.
//
// # How it works
//
// [Isolate] acquires one connection from the pool and begins a
// transaction on it, the test's transaction. Every call of the DB runs on
// that connection, inside it: a transaction of [DB.Begin] (and so each
// scope's transaction of [DB.NewTx]) is a SAVEPOINT, its commit a RELEASE
// SAVEPOINT, its rollback a ROLLBACK TO SAVEPOINT. A statement outside any
// transaction (DB.Exec, a sqlc query outside a scope) runs in a savepoint
// of its own, so that one that fails fails alone, as on a pool, where a
// failed statement would otherwise abort the test's transaction. When the
// test ends, the test's transaction is rolled back and the connection is
// closed, so that nothing the test did to its session (prepared
// statements, session advisory locks, statements cached against tables it
// altered) reaches the next test; the pool opens a new one when it needs
// one. It costs a connection per test, as scopedtest.IsolatedDB does.
//
// A child scope ([scoped.Run] or [scoped.Begin] inside a scope) nests in its
// parent's transaction with a SAVEPOINT, exactly as on a real pool: the
// same rows and the same errors in every nesting case
// (TestIsolatedNestsAsTheRealPool). A transaction of DB.Begin that a
// failed statement aborted fails to commit with [pgx.ErrTxCommitRollback]
// and rolls back, as COMMIT does.
//
// Results are read to the end before Query (and SendBatch) returns, so
// iterating over rows never holds the connection: a loop that runs a
// statement per row works as it does on a pool, even in a transaction
// (where pgx itself would refuse it: the connection is busy).
//
// # Transactions
//
// One connection has one transaction state, so transactions of DB.Begin
// run one at a time: while one is open, another Begin (another scope's
// first Current) waits for it to end, for as long as its context lets it
// and at most 30 seconds.
// The transactions of concurrent requests in a test, each in its own
// scope, thus run one after another, each isolated from the others as if
// serialized. Three consequences:
//   - An independent unit of work ([scoped.Independent],
//     [scoped.BeginIndependent]), or a DB.Begin, inside an open scope waits
//     for the scope's transaction, which cannot end before it does: it
//     waits until its own context ends (or 30 seconds pass, so that a
//     test on t.Context() does not hang), then fails with an error that
//     names where the open transaction was begun. On a real pool it would
//     take a second connection; test such code on one.
//   - Call NewTx once per DB and wire everything with it: two
//     ScopedSessions of one DB used in one scope would each begin a
//     transaction of DB.Begin, and the second would wait for the first.
//   - Statements outside any transaction do not wait: they run in
//     whatever transaction is open on the connection, in a savepoint of
//     their own. So, unlike on a pool, they see its uncommitted writes,
//     their work is undone if it rolls back, and they fail while a failed
//     statement has aborted it.
//
// # Contexts
//
// Every call waits for its turn on the connection for as long as its
// context lets it, and fails at once if its context is already done. A
// statement whose context ends while it runs is cancelled with a
// PostgreSQL cancel request and fails, with an error wrapping the
// context's; the connection and the test's transaction stay. (pgx would
// close the connection to interrupt it, which would end the test's
// transaction.) Ending a transaction waits for a call in progress on
// another goroutine, but on no context: an end always happens.
//
// # Limits
//
// Do not run BEGIN, COMMIT or ROLLBACK as SQL text, and do not end the
// transaction on the escape hatches Conn and LargeObjects, which bypass
// the turns: COMMIT as SQL text commits the test's transaction. When the
// test's transaction ends under it (that, or a lost connection), every
// later call fails with an error wrapping [ErrBroken], and the test fails.
//
// Isolation levels and access modes (pgx.TxOptions of BeginTx) are
// ignored: savepoints have none. A read-only transaction can write, and
// no serialization failure happens.
//
// Tests running in parallel, each with its own DB, do not see each
// other's writes, but they do wait for each other's row locks: two tests
// inserting the same primary key block until the first one ends. Give
// parallel tests distinct keys, and a pool with a connection for each.
//
// # Concurrency
//
// A DB and its transactions are safe for concurrent use. Calls from any
// number of goroutines take turns on the connection, one at a time;
// none fails because of the sharing. (scopedpgx's transactions refuse a
// second concurrent call instead, since a pgx.Tx serves one call at a
// time: code that makes such calls passes here and fails there.)
package scopedpgxtest
