// Package scopedtest gives each test a database whose every change is
// rolled back when the test ends, the Go form of Flask-SQLAlchemy-Lite's
// test_isolation(). It needs no scope to stay open across the test:
// scopes, transactions and commits inside the test work as in production,
// and the test still leaves nothing behind.
//
// # Usage
//
//	func TestSignup(t *testing.T) {
//		db := scopedtest.IsolatedDB(t, "postgres", os.Getenv("TEST_DATABASE_URL"))
//		txs := scoped.New(scopedsql.Tx(db, nil))
//
//		ctx, scope := scoped.Begin(t.Context())
//		tx, _ := txs.Current(ctx)
//		tx.ExecContext(ctx, "INSERT INTO users (name) VALUES ('ada')")
//		if err := scope.Commit(); err != nil { // committed: visible to the rest of the test
//			t.Fatal(err)
//		}
//		// ... assertions on db ...
//	} // rolled back here: the users table is as it was
//
// # How it works
//
// [IsolatedDB] opens one real connection and begins a transaction on it
// (the outer transaction). The *sql.DB it returns serves every connection
// database/sql asks for from that one connection: a transaction begun on
// it is a SAVEPOINT, its commit a RELEASE SAVEPOINT, its rollback a
// ROLLBACK TO SAVEPOINT. A statement outside any transaction runs in a
// savepoint of its own, so that one that fails (a unique violation a test
// provokes on purpose) fails alone, as in autocommit mode, even on
// PostgreSQL, where a failed statement would otherwise abort the outer
// transaction. When the test ends, the outer transaction is rolled back.
//
// Results are read to the end before a query returns, so iterating over
// rows never holds the connection: a loop that runs a statement per row
// works as it does on a pool.
//
// # Sharing one connection
//
// Statements from any number of goroutines take turns on the connection,
// one at a time; none fails because of the sharing. A child scope
// (scoped.Begin or scoped.Run inside a scope) joins its parent's
// transaction with a SAVEPOINT, exactly as on a real pool: the same rows
// and the same errors in every nesting case (TestIsolatedDBNestsAsTheRealPool).
// A transaction begun while another is open, such as an independent unit
// of work's (scoped.Independent), nests inside it: its rollback undoes
// only its own work, and its commit makes its work part of the enclosing
// transaction, so that a later rollback of the enclosing one undoes it too
// (on a real pool the two would be independent, and the inner commit
// would stay). Transactions
// that overlap without nesting, from concurrent goroutines, are not
// isolated from each other, because one connection has one transaction
// state:
//   - each sees what the others wrote and have not committed;
//   - a rollback undoes everything written on the connection since that
//     transaction began, by any goroutine (the others' own savepoints are
//     renewed, so that they can still commit or roll back);
//   - on PostgreSQL, a failed statement inside a transaction blocks every
//     statement on the connection until that transaction rolls back, as it
//     would block the transaction itself.
//
// Tests that need concurrent transactions isolated from each other are
// testing the database itself and need a real pool.
//
// A statement already running is not interrupted when its context is
// cancelled (drivers interrupt a statement by closing or poisoning the
// connection, which would end the outer transaction); a context done
// before the statement starts still makes it fail at once. Isolation
// levels and read-only options of transactions are ignored: savepoints
// have none.
//
// # Limits
//
// Do not run BEGIN, COMMIT or ROLLBACK as SQL text; use [database/sql.DB.Begin]
// and friends, which the wrapper turns into savepoints.
//
// On MySQL and MariaDB, DDL (CREATE, ALTER, DROP, TRUNCATE) commits the
// transaction implicitly: it cannot be rolled back, and everything written
// before it in the test is committed too. Create tables outside the
// isolated database, before the test (TestMain or a migration). When a
// statement ends the outer transaction, IsolatedDB notices on the next
// savepoint operation and every later call fails with an error wrapping
// [ErrBroken]. On PostgreSQL, DDL is transactional and rolled back like the
// rest.
//
// Tests running in parallel, each with its own IsolatedDB, do not see each
// other's writes, but they do wait for each other's row locks: two tests
// inserting the same primary key block until the first one ends. Give
// parallel tests distinct keys.
//
// # Concurrency
//
// The *sql.DB returned is safe for concurrent use, as any *sql.DB.
package scopedtest
