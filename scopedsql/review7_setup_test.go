package scopedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/lib/pq"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// A setup that panics (a nil tenant dereferenced, say) must not take the
// transaction's connection with it: net/http recovers a handler's panic
// and serves on, so a leaked transaction per panic drains the pool. The
// transaction is begun with a context that never ends once BEGIN
// returned, so nothing but its factory can roll it back.
func TestReview7SetupPanicLeavesNoConnectionTaken(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(func(ctx context.Context, tx *sql.Tx) error {
			panic("review7: setup bug")
		}), scoped.WithTeardownErrorHook(nil))
		func() {
			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			defer scope.Remove()
			defer func() {
				if p := recover(); p == nil {
					t.Error("the setup's panic did not reach the caller of Current")
				}
			}()
			_, _ = txs.Current(ctx)
		}()
		testkit.Eventually(t, "the panicked setup's connection back in the pool", func() bool {
			return db.Stats().InUse == 0
		})
		// The pool of one serves the next unit.
		var one int
		if err := db.QueryRowContext(dbtest.Ctx(t), "SELECT 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
	})
}

// A setup whose first statement ran and whose second failed on the server
// fails Current with the server's error (errors.As finds it), rolls back
// what the first did, leaves the pool's one connection idle and usable,
// and the scope's next Current begins and runs the setup again.
func TestReview7SetupFailingHalfWay(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		table := dbtest.CreateIDTable(t, db, "r7_setup")
		var runs atomic.Int32
		txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, s.InsertID(table), 1); err != nil {
				return err
			}
			if runs.Add(1) == 1 {
				_, err := tx.ExecContext(ctx, "SELECT * FROM r7_no_such_table")
				return err
			}
			return nil
		}), scoped.WithTeardownErrorHook(nil))
		ctx, scope := scoped.Begin(dbtest.Ctx(t))
		_, err := txs.Current(ctx)
		var pqErr *pq.Error
		var myErr *mysql.MySQLError
		if !errors.As(err, &pqErr) && !errors.As(err, &myErr) {
			t.Errorf("Current with a setup that failed on the server = %v, want the server's error", err)
		}
		wantInUse(t, db, 0)
		if got := dbtest.IDs(t, db, table); len(got) != 0 {
			t.Errorf("the failed setup's first statement saved %v", got)
		}
		tx, err := txs.Current(ctx)
		if err != nil {
			t.Fatalf("the scope's next Current: %v", err)
		}
		if _, err := tx.ExecContext(ctx, s.InsertID(table), 2); err != nil {
			t.Fatal(err)
		}
		if err := scope.Commit(); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		scope.Remove()
		if got := dbtest.IDs(t, db, table); len(got) != 2 || got[0] != 1 || got[1] != 2 {
			t.Errorf("committed %v, want [1 2]", got)
		}
		wantInUse(t, db, 0)
	})
}
