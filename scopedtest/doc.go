// Package scopedtest helps test code that uses package scoped.
//
// [IsolatedDB] gives a test a *sql.DB whose every change is rolled back
// when the test ends (the Go form of Flask-SQLAlchemy-Lite's
// test_isolation()), with no scope open across the test:
//
//	func TestSignup(t *testing.T) {
//		db := scopedtest.IsolatedDB(t, "postgres", os.Getenv("TEST_DATABASE_URL"))
//		txs := scopedsql.NewTx(db, nil)
//		err := scoped.Run(t.Context(), func(ctx context.Context) error {
//			tx, err := txs.Current(ctx) // a SAVEPOINT of the test's transaction
//			...
//		})
//		... // committed: visible to the rest of the test
//	} // rolled back here
//
// It serves every connection from one connection inside an outer
// transaction and turns the code's BEGIN, COMMIT and ROLLBACK into
// savepoints, so scopes, commits, nested units and unit hooks behave as in
// production. One connection has one transaction state: transactions that
// overlap without nesting, from concurrent goroutines, see each other's
// writes, and an independent unit (scoped.Independent) nests in the open
// transaction instead of surviving its rollback. On MySQL, create tables
// before the test (DDL commits implicitly).
//
// [CheckScopes] fails a test that leaves a scope or a session open, naming
// the line that began it; in TestMain:
//
//	goleak.VerifyTestMain(scopedtest.CheckScopesM(m))
package scopedtest
