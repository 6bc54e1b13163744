// Package scopedpgxtest gives each test a pgx database whose every change
// is rolled back when the test ends: scopedtest.IsolatedDB for pgxpool
// users. Scopes, transactions, nested units and unit hooks inside the test
// work as in production, and the test leaves nothing behind.
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
// A DB has the methods of a *pgxpool.Pool that run statements, so code that
// takes an interface of them (sqlc's New, [scopedpgx.NewDBTX]) takes a DB.
// Everything runs on one connection inside the test's transaction: a
// transaction is a SAVEPOINT, a statement outside any transaction runs in
// a savepoint of its own (so one that fails fails alone), and results are
// read before Query returns (so a loop over rows may run statements). At
// the end the transaction is rolled back and the connection closed.
//
// Where it differs from a pool, because one connection has one transaction
// state:
//   - Transactions run one at a time: concurrent requests in a test are
//     serialized. An independent unit (scoped.Independent) inside an open
//     scope waits for it and fails when its context ends (at most 30 s),
//     naming where the open transaction began: test such code on a pool.
//     Call NewTx once per DB.
//   - Statements outside any transaction see the open transaction's
//     uncommitted writes.
//   - Isolation levels and access modes are ignored (savepoints have none).
//   - A statement whose context ends is cancelled with a cancel request;
//     the test's transaction survives it.
//   - Never run BEGIN, COMMIT or ROLLBACK as SQL text: once the test's
//     transaction has ended, every call fails with [ErrBroken].
//
// Parallel tests, each with its own DB, do not see each other's writes but
// wait for each other's row locks: give them distinct keys.
package scopedpgxtest
