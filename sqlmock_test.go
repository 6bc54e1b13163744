package scoped_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"

	"github.com/go-scoped/scoped"
)

// mockDB returns a go-sqlmock database that is closed when the test ends.
func mockDB(t *testing.T) (*sql.DB, sqlmock.Sqlmock) {
	t.Helper()
	db, mock, err := sqlmock.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range db.Stats().OpenConnections { // each pooled driver connection is closed
			mock.ExpectClose()
		}
		if err := db.Close(); err != nil {
			t.Errorf("db.Close: %v", err)
		}
	})
	return db, mock
}

// checkDB fails unless every expectation was met and no connection is
// left in use.
func checkDB(t *testing.T, db *sql.DB, mock sqlmock.Sqlmock) {
	t.Helper()
	if err := mock.ExpectationsWereMet(); err != nil {
		t.Error(err)
	}
	if n := db.Stats().InUse; n != 0 {
		t.Errorf("db.Stats().InUse = %d after the scope ended, want 0", n)
	}
}

// txScopedSession is the whole configuration *sql.Tx needs: none.
func txScopedSession(db *sql.DB) *scoped.ScopedSession[*sql.Tx] {
	return scoped.New(func(ctx context.Context) (*sql.Tx, error) {
		return db.BeginTx(ctx, nil)
	}, scoped.WithTeardownErrorHook(nil))
}

func TestSQLTxIsRolledBackOnRemove(t *testing.T) {
	db, mock := mockDB(t)
	mock.ExpectBegin()
	mock.ExpectExec("INSERT INTO users").WithArgs("ann").WillReturnResult(sqlmock.NewResult(1, 1))
	mock.ExpectRollback()
	r := txScopedSession(db)

	ctx, scope := scoped.Begin(context.Background())
	tx := mustCurrent(t, r, ctx)
	if _, err := tx.ExecContext(ctx, "INSERT INTO users(name) VALUES (?)", "ann"); err != nil {
		t.Fatal(err)
	}
	if again := mustCurrent(t, r, ctx); again != tx {
		t.Fatal("second Current began another transaction")
	}
	if n := db.Stats().InUse; n != 1 {
		t.Fatalf("InUse = %d while the scope holds a transaction, want 1", n)
	}
	if err := scope.Remove(); err != nil {
		t.Fatalf("Remove = %v", err)
	}
	checkDB(t, db, mock)
	if st := r.Stats(); st.RolledBack != 1 || st.Live != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestSQLTxIsCommittedOnScopeCommit(t *testing.T) {
	db, mock := mockDB(t)
	mock.ExpectBegin()
	mock.ExpectExec("UPDATE users").WillReturnResult(sqlmock.NewResult(0, 1))
	mock.ExpectCommit()
	r := txScopedSession(db)

	ctx, scope := scoped.Begin(context.Background())
	tx := mustCurrent(t, r, ctx)
	if _, err := tx.ExecContext(ctx, "UPDATE users SET name = 'bob'"); err != nil {
		t.Fatal(err)
	}
	if err := scope.Commit(); err != nil {
		t.Fatalf("Commit = %v", err)
	}
	checkDB(t, db, mock)
	if st := r.Stats(); st.Committed != 1 || st.Live != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestSQLTxCommitFailureIsReturned(t *testing.T) {
	errCommit := errors.New("could not serialize access")
	db, mock := mockDB(t)
	mock.ExpectBegin()
	mock.ExpectCommit().WillReturnError(errCommit)
	r := txScopedSession(db)

	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, r, ctx)
	if err := scope.Commit(); !errors.Is(err, errCommit) {
		t.Fatalf("Commit = %v, want an error wrapping %v", err, errCommit)
	}
	checkDB(t, db, mock)
}

func TestSQLTxCommittedByHandThenRemovedIsNoError(t *testing.T) {
	db, mock := mockDB(t)
	mock.ExpectBegin()
	mock.ExpectCommit()
	r := txScopedSession(db)

	ctx, scope := scoped.Begin(context.Background())
	tx := mustCurrent(t, r, ctx)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := scope.Remove(); err != nil {
		t.Fatalf("Remove after a manual commit = %v, want nil (sql.ErrTxDone is not a failure)", err)
	}
	checkDB(t, db, mock)
	if st := r.Stats(); st.Failed != 0 {
		t.Fatalf("Stats = %+v, want no failure", st)
	}
}

func TestSQLConnIsClosedWhenScopeEnds(t *testing.T) {
	for _, commit := range []bool{false, true} {
		db, mock := mockDB(t)
		mock.ExpectExec("SET search_path").WillReturnResult(sqlmock.NewResult(0, 0))
		r := scoped.New(func(ctx context.Context) (*sql.Conn, error) {
			return db.Conn(ctx)
		}, scoped.WithTeardownErrorHook(nil))

		ctx, scope := scoped.Begin(context.Background())
		conn := mustCurrent(t, r, ctx)
		if _, err := conn.ExecContext(ctx, "SET search_path TO app"); err != nil {
			t.Fatal(err)
		}
		if n := db.Stats().InUse; n != 1 {
			t.Fatalf("InUse = %d while the scope holds a connection, want 1", n)
		}
		end := scope.Remove
		if commit {
			end = scope.Commit // nothing to commit on a connection: it is closed
		}
		if err := end(); err != nil {
			t.Fatalf("commit=%v: %v", commit, err)
		}
		checkDB(t, db, mock)
		if err := conn.PingContext(context.Background()); !errors.Is(err, sql.ErrConnDone) {
			t.Fatalf("commit=%v: connection still usable after the scope ended: %v", commit, err)
		}
		if st := r.Stats(); st.RolledBack != 1 || st.Live != 0 {
			t.Fatalf("commit=%v: Stats = %+v", commit, st)
		}
	}
}

func TestSQLTxAndConnInOneScope(t *testing.T) {
	db, mock := mockDB(t)
	mock.ExpectBegin()
	mock.ExpectRollback()
	txs := txScopedSession(db)
	conns := scoped.New(func(ctx context.Context) (*sql.Conn, error) { return db.Conn(ctx) })

	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, txs, ctx)
	mustCurrent(t, conns, ctx)
	if n := db.Stats().InUse; n != 2 {
		t.Fatalf("InUse = %d, want 2", n)
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	checkDB(t, db, mock)
}
