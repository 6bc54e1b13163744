package scopedsql_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedsql"
)

// Faults a real server cannot be made to produce on demand, played by
// go-sqlmock. Each must surface as an error and leave nothing behind: no
// registered session, no connection in use, no unmet expectation.

var errBoom = errors.New("boom")

func newMock(t *testing.T) (*sql.DB, sqlmock.Sqlmock) {
	t.Helper()
	db, mock, err := sqlmock.New(sqlmock.QueryMatcherOption(sqlmock.QueryMatcherEqual))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, mock
}

func wantMet(t *testing.T, mock sqlmock.Sqlmock) {
	t.Helper()
	if err := mock.ExpectationsWereMet(); err != nil {
		t.Error(err)
	}
}

func TestBeginFailureIsReturnedAndRegistersNothing(t *testing.T) {
	t.Parallel()
	db, mock := newMock(t)
	mock.ExpectBegin().WillReturnError(errBoom)
	txs := scoped.New(scopedsql.Tx(db, nil))

	ctx, scope := scoped.Begin(context.Background())
	_, err := txs.Current(ctx)
	if !errors.Is(err, errBoom) {
		t.Fatalf("Current = %v, want an error wrapping %v", err, errBoom)
	}
	if txs.Has(ctx) {
		t.Error("a session is registered after the failed begin")
	}
	if err := scope.Remove(); err != nil {
		t.Errorf("Remove: %v", err)
	}
	wantStats(t, txs.Stats(), scoped.Stats{Failed: 1})
	wantInUse(t, db, 0)
	wantMet(t, mock)
}

func TestCommitFailureIsReturnedNamingTheSessionAndReleasesTheConnection(t *testing.T) {
	t.Parallel()
	db, mock := newMock(t)
	mock.ExpectBegin()
	mock.ExpectExec("UPDATE t SET n = 1").WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit().WillReturnError(errBoom)
	var log errorLog
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithName("orders"), log.option())

	ctx, scope := scoped.Begin(context.Background())
	tx, err := txs.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE t SET n = 1"); err != nil {
		t.Fatal(err)
	}
	err = scope.Commit()
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "orders") {
		t.Fatalf("Commit = %v, want an error naming the orders session and wrapping %v", err, errBoom)
	}
	if len(log.all()) != 1 {
		t.Errorf("teardown hook saw %v, want the commit error", log.all())
	}
	wantStats(t, txs.Stats(), scoped.Stats{Created: 1, Failed: 1})
	wantInUse(t, db, 0)
	wantMet(t, mock)
}

func TestRollbackFailureIsReturnedAndReleasesTheConnection(t *testing.T) {
	t.Parallel()
	db, mock := newMock(t)
	mock.ExpectBegin()
	mock.ExpectRollback().WillReturnError(errBoom)
	var log errorLog
	txs := scoped.New(scopedsql.Tx(db, nil), log.option())

	ctx, scope := scoped.Begin(context.Background())
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if err := scope.Remove(); !errors.Is(err, errBoom) {
		t.Fatalf("Remove = %v, want an error wrapping %v", err, errBoom)
	}
	// A real rollback failure stays loud, unlike a gone connection's.
	if errs := log.all(); len(errs) != 1 || !errors.Is(errs[0], errBoom) {
		t.Errorf("teardown hook saw %v, want the rollback error", errs)
	}
	if txs.Has(ctx) {
		t.Error("a session is still registered")
	}
	wantStats(t, txs.Stats(), scoped.Stats{Created: 1, Failed: 1})
	wantInUse(t, db, 0)
	wantMet(t, mock)
}

// A connection that breaks in the middle of a transaction fails the
// statement; its rollback finds the connection gone (driver.ErrBadConn).
// The server aborts the transaction of a session that ends, so nothing is
// left undone: Remove reports nothing (issue 10 item 8), and database/sql
// closes the connection rather than pooling it.
func TestBrokenConnectionMidTransactionSurfacesAndIsDiscarded(t *testing.T) {
	t.Parallel()
	db, mock := newMock(t)
	mock.ExpectBegin()
	mock.ExpectExec("UPDATE t SET n = 1").WillReturnError(driver.ErrBadConn)
	mock.ExpectRollback().WillReturnError(driver.ErrBadConn)
	mock.ExpectClose()
	var log errorLog
	txs := scoped.New(scopedsql.Tx(db, nil), log.option())

	ctx, scope := scoped.Begin(context.Background())
	tx, err := txs.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE t SET n = 1"); !errors.Is(err, driver.ErrBadConn) {
		t.Fatalf("Exec = %v, want driver.ErrBadConn", err)
	}
	if err := scope.Remove(); err != nil {
		t.Fatalf("Remove = %v, want nil: the rollback of a gone connection is no failure", err)
	}
	if errs := log.all(); len(errs) > 0 {
		t.Errorf("teardown errors: %v", errs)
	}
	wantStats(t, txs.Stats(), scoped.Stats{Created: 1, RolledBack: 1})
	wantInUse(t, db, 0)
	if n := db.Stats().OpenConnections; n != 0 {
		t.Errorf("%d open connections, want the broken one closed", n)
	}
	wantMet(t, mock)
}

// The transaction ends once: a transaction its user already committed is
// not rolled back again, and nothing is reported.
func TestTxCommittedByHandIsNotEndedAgain(t *testing.T) {
	t.Parallel()
	db, mock := newMock(t)
	mock.ExpectBegin()
	mock.ExpectCommit()
	var log errorLog
	txs := scoped.New(scopedsql.Tx(db, nil), log.option())

	ctx, scope := scoped.Begin(context.Background())
	tx, err := txs.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := scope.Remove(); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	if errs := log.all(); len(errs) > 0 {
		t.Errorf("teardown errors: %v", errs)
	}
	wantInUse(t, db, 0)
	wantMet(t, mock)
}
