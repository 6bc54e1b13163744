package scopedtest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedtest"
)

// These tests put go-sqlmock under IsolatedDB, to pin down exactly which
// statements reach the one real connection.

var errBoom = errors.New("boom")

// mockedIsolatedDB returns an isolated database over a go-sqlmock
// connection whose outer transaction is already expected, and checks at
// the end of t that the outer transaction was rolled back and the
// connection closed after everything the test expected.
func mockedIsolatedDB(t *testing.T, tb testing.TB) (*sql.DB, sqlmock.Sqlmock) {
	t.Helper()
	dsn := "scopedtest-" + t.Name()
	mockDB, mock, err := sqlmock.NewWithDSN(dsn, sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mock.ExpectationsWereMet(); err != nil {
			t.Error(err)
		}
		_ = mockDB.Close() // an unexpected Close by now, hence an error to ignore
	})
	mock.ExpectBegin()
	db := scopedtest.IsolatedDB(tb, "sqlmock", dsn)
	return db, mock
}

// expectEnd expects the outer transaction to be rolled back and the
// connection closed, after whatever was expected before.
func expectEnd(mock sqlmock.Sqlmock) {
	mock.ExpectRollback()
	mock.ExpectClose()
}

func expectSQL(mock sqlmock.Sqlmock, stmts ...string) {
	for _, s := range stmts {
		mock.ExpectExec(s).WillReturnResult(sqlmock.NewResult(0, 0))
	}
}

func begin(t *testing.T, db *sql.DB) *sql.Tx {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestTransactionsBecomeSavepointsInOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, a, b *sql.Tx)
		want []string
	}{
		{"nested, inner rolled back", func(t *testing.T, a, b *sql.Tx) {
			must(t, b.Rollback())
			must(t, a.Commit())
		}, []string{
			"ROLLBACK TO SAVEPOINT scopedtest_tx_2", "RELEASE SAVEPOINT scopedtest_tx_2",
			"RELEASE SAVEPOINT scopedtest_tx_1",
		}},
		{"nested, outer rolled back", func(t *testing.T, a, b *sql.Tx) {
			must(t, b.Commit())
			must(t, a.Rollback())
		}, []string{
			"RELEASE SAVEPOINT scopedtest_tx_2",
			"ROLLBACK TO SAVEPOINT scopedtest_tx_1", "RELEASE SAVEPOINT scopedtest_tx_1",
		}},
		{"overlapping, first committed first", func(t *testing.T, a, b *sql.Tx) {
			must(t, a.Commit()) // released with b's, once b ends
			must(t, b.Commit())
		}, []string{
			"RELEASE SAVEPOINT scopedtest_tx_2", "RELEASE SAVEPOINT scopedtest_tx_1",
		}},
		{"overlapping, first rolled back first", func(t *testing.T, a, b *sql.Tx) {
			must(t, a.Rollback()) // discards b's savepoint: b gets a new one
			must(t, b.Commit())
		}, []string{
			"ROLLBACK TO SAVEPOINT scopedtest_tx_1", "RELEASE SAVEPOINT scopedtest_tx_1",
			"SAVEPOINT scopedtest_tx_2",
			"RELEASE SAVEPOINT scopedtest_tx_2",
		}},
		{"overlapping, committed then rolled back under it", func(t *testing.T, a, b *sql.Tx) {
			must(t, b.Commit())
			must(t, a.Rollback())
		}, []string{
			"RELEASE SAVEPOINT scopedtest_tx_2",
			"ROLLBACK TO SAVEPOINT scopedtest_tx_1", "RELEASE SAVEPOINT scopedtest_tx_1",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, mock := mockedIsolatedDB(t, t)
			expectSQL(mock, "SAVEPOINT scopedtest_tx_1", "SAVEPOINT scopedtest_tx_2")
			expectSQL(mock, tc.want...)
			expectEnd(mock)
			tc.run(t, begin(t, db), begin(t, db))
		})
	}
}

func TestStatementOutsideTransactionRunsInItsOwnSavepoint(t *testing.T) {
	db, mock := mockedIsolatedDB(t, t)
	expectSQL(mock, "SAVEPOINT scopedtest_stmt_1")
	mock.ExpectExec("INSERT INTO t VALUES (1)").WillReturnResult(sqlmock.NewResult(1, 1))
	expectSQL(mock, "RELEASE SAVEPOINT scopedtest_stmt_1")
	expectSQL(mock, "SAVEPOINT scopedtest_stmt_2")
	mock.ExpectExec("INSERT INTO t VALUES (1)").WillReturnError(errBoom)
	expectSQL(mock, "ROLLBACK TO SAVEPOINT scopedtest_stmt_2", "RELEASE SAVEPOINT scopedtest_stmt_2")
	expectEnd(mock)

	if _, err := db.Exec("INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO t VALUES (1)"); !errors.Is(err, errBoom) {
		t.Fatalf("Exec = %v, want %v", err, errBoom)
	}
}

func TestStatementInTransactionRunsInTheTransactionsSavepoint(t *testing.T) {
	db, mock := mockedIsolatedDB(t, t)
	expectSQL(mock, "SAVEPOINT scopedtest_tx_1", "INSERT INTO t VALUES (1)")
	mock.ExpectQuery("SELECT n FROM t").WillReturnRows(sqlmock.NewRows([]string{"n"}).AddRow(1).AddRow(2))
	expectSQL(mock, "RELEASE SAVEPOINT scopedtest_tx_1")
	expectEnd(mock)

	tx := begin(t, db)
	if _, err := tx.Exec("INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var sum int
	rows, err := tx.Query("SELECT n FROM t")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n int
		must(t, rows.Scan(&n))
		sum += n
	}
	must(t, rows.Err())
	must(t, tx.Commit())
	if sum != 3 {
		t.Errorf("sum = %d, want 3", sum)
	}
}

// A transaction that cannot be released (on PostgreSQL, one with a failed
// statement) is rolled back, as COMMIT does there, and the error returned.
func TestCommitThatCannotReleaseRollsBack(t *testing.T) {
	db, mock := mockedIsolatedDB(t, t)
	expectSQL(mock, "SAVEPOINT scopedtest_tx_1")
	mock.ExpectExec("RELEASE SAVEPOINT scopedtest_tx_1").WillReturnError(errBoom)
	expectSQL(mock, "ROLLBACK TO SAVEPOINT scopedtest_tx_1", "RELEASE SAVEPOINT scopedtest_tx_1")
	expectSQL(mock, "SAVEPOINT scopedtest_stmt_2", "DELETE FROM t", "RELEASE SAVEPOINT scopedtest_stmt_2")
	expectEnd(mock)

	if err := begin(t, db).Commit(); !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("Commit = %v, want an error wrapping %v saying the transaction was rolled back", err, errBoom)
	}
	if _, err := db.Exec("DELETE FROM t"); err != nil {
		t.Fatalf("the database is unusable after a failed commit: %v", err)
	}
}

// cleanupRecorder is a dbtest.FakeTB whose Fatalf is recorded too, and
// which counts the cleanups registered.
type cleanupRecorder struct {
	*dbtest.FakeTB
	fatals     []string
	registered int
}

func newCleanupRecorder(t testing.TB) *cleanupRecorder {
	return &cleanupRecorder{FakeTB: &dbtest.FakeTB{TB: t}}
}

// Fatalf records the failure and ends the caller by panicking, where
// testing.T would end the goroutine; the test recovers.
func (r *cleanupRecorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
	panic("cleanupRecorder.Fatalf")
}

func (r *cleanupRecorder) Cleanup(f func()) {
	r.registered++
	r.FakeTB.Cleanup(f)
}

// A statement that ends the outer transaction (DDL on MySQL) makes the
// savepoint after it fail: from then on nothing is isolated, every call
// fails, and the test is told at its end.
func TestLostOuterTransactionBreaksTheDatabaseLoudly(t *testing.T) {
	rec := newCleanupRecorder(t)
	db, mock := mockedIsolatedDB(t, rec)
	expectSQL(mock, "SAVEPOINT scopedtest_stmt_1", "CREATE TABLE t (id INT)")
	mock.ExpectExec("RELEASE SAVEPOINT scopedtest_stmt_1").WillReturnError(errors.New("SAVEPOINT does not exist"))
	mock.ExpectClose() // no rollback of the outer transaction: it is gone

	_, err := db.Exec("CREATE TABLE t (id INT)")
	if !errors.Is(err, scopedtest.ErrBroken) || !strings.Contains(err.Error(), "DDL") {
		t.Fatalf("Exec = %v, want ErrBroken mentioning DDL", err)
	}
	if _, err := db.Exec("INSERT INTO t VALUES (1)"); !errors.Is(err, scopedtest.ErrBroken) {
		t.Errorf("the next Exec = %v, want ErrBroken", err)
	}
	if _, err := db.BeginTx(context.Background(), nil); !errors.Is(err, scopedtest.ErrBroken) {
		t.Errorf("Begin = %v, want ErrBroken", err)
	}
	if errs := rec.End(); len(errs) != 1 || !strings.Contains(errs[0], "broke during the test") {
		t.Errorf("errors reported to the test: %q, want one saying the database broke", errs)
	}
}
