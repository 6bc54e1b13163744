package scopedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

func TestTxIsCommittedByScopeCommitAndRolledBackByRemove(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		table := dbtest.CreateIDTable(t, db, "scopedsql_commit")
		var log errorLog
		txs := scoped.New(scopedsql.Tx(db, nil), log.option())

		for id, commit := range map[int64]bool{1: true, 2: false} {
			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			tx, err := txs.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, s.InsertID(table), id); err != nil {
				t.Fatal(err)
			}
			if commit {
				err = scope.Commit()
			} else {
				err = scope.Remove()
			}
			if err != nil {
				t.Fatalf("id %d: %v", id, err)
			}
		}

		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1}) {
			t.Errorf("ids = %v, want [1]", got)
		}
		wantInUse(t, db, 0)
		wantStats(t, txs.Stats(), scoped.Stats{Created: 2, Committed: 1, RolledBack: 1})
		if errs := log.all(); len(errs) > 0 {
			t.Errorf("teardown errors: %v", errs)
		}
	})
}

func TestConnPinsOneBackendPerScopeAndReturnsItOnRemove(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		conns := scoped.New(scopedsql.Conn(db))

		ctx, scope := scoped.Begin(dbtest.Ctx(t))
		first, err := conns.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := backendID(t, first, s)
		// Other scopes hold other connections meanwhile, so that a pool
		// handing out any free connection could not pass by chance.
		other, otherScope := scoped.Begin(dbtest.Ctx(t))
		oc, err := conns.Current(other)
		if err != nil {
			t.Fatal(err)
		}
		if id := backendID(t, oc, s); id == want {
			t.Fatalf("two open scopes share backend %d", id)
		}
		for i := range 5 {
			c, err := conns.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if c != first {
				t.Fatalf("call %d: a different *sql.Conn in the same scope", i)
			}
			if got := backendID(t, c, s); got != want {
				t.Fatalf("call %d: backend %d, want %d", i, got, want)
			}
		}
		wantInUse(t, db, 2)

		if err := scope.Remove(); err != nil {
			t.Fatal(err)
		}
		if err := otherScope.Remove(); err != nil {
			t.Fatal(err)
		}
		wantInUse(t, db, 0)
		if conns.Has(ctx) {
			t.Error("Has after Remove")
		}
		if _, err := conns.Current(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
			t.Errorf("Current after Remove: %v, want ErrScopeClosed", err)
		}
	})
}

// The transaction is begun with the scope's context, but cancelling that
// context afterwards does not end it: only its owner (the scope) does.
func TestTxOutlivesCancellationOfItsBeginContext(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		table := dbtest.CreateIDTable(t, db, "scopedsql_outlive")

		ctx, cancel := context.WithCancel(dbtest.Ctx(t))
		tx, err := scopedsql.Tx(db, nil)(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := tx.ExecContext(dbtest.Ctx(t), s.InsertID(table), 7); err != nil {
			t.Fatalf("exec after cancel: %v", err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatalf("commit after cancel: %v", err)
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{7}) {
			t.Errorf("ids = %v, want [7]", got)
		}
		wantInUse(t, db, 0)
	})
}

// A scope whose context is cancelled is rolled back by the scope, with a
// plain ROLLBACK: the connection is not discarded and is handed out again.
func TestCancelledScopeIsRolledBackAndItsConnectionReused(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		table := dbtest.CreateIDTable(t, db, "scopedsql_cancel")
		var log errorLog
		txs := scoped.New(scopedsql.Tx(db, nil), log.option())

		parent, cancel := context.WithCancel(dbtest.Ctx(t))
		ctx, scope := scoped.Begin(parent)
		tx, err := txs.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before := backendID(t, tx, s)
		if _, err := tx.ExecContext(ctx, s.InsertID(table), 1); err != nil {
			t.Fatal(err)
		}
		cancel()
		// Remove waits for the safety net if it got there first.
		if err := scope.Remove(); err != nil {
			t.Fatal(err)
		}

		if got := dbtest.IDs(t, db, table); len(got) != 0 {
			t.Errorf("ids = %v, want none", got)
		}
		wantInUse(t, db, 0)
		wantStats(t, txs.Stats(), scoped.Stats{Created: 1, RolledBack: 1})
		if errs := log.all(); len(errs) > 0 {
			t.Errorf("teardown errors: %v", errs)
		}
		ctx2, scope2 := scoped.Begin(dbtest.Ctx(t))
		defer scope2.Remove()
		tx2, err := txs.Current(ctx2)
		if err != nil {
			t.Fatal(err)
		}
		if after := backendID(t, tx2, s); after != before {
			t.Errorf("backend %d after the cancelled scope, want %d: the connection was discarded", after, before)
		}
	})
}

func TestTxBeginGivesUpAtDeadlineWhenPoolIsExhausted(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		hold, err := db.Conn(dbtest.Ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		txs := scoped.New(scopedsql.Tx(db, nil))

		deadline, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		ctx, scope := scoped.Begin(deadline)
		defer scope.Remove()
		_, err = txs.Current(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Current = %v, want an error wrapping context.DeadlineExceeded", err)
		}
		if txs.Has(ctx) {
			t.Error("a session is registered after the failed begin")
		}
		wantStats(t, txs.Stats(), scoped.Stats{Failed: 1})
		if err := hold.Close(); err != nil {
			t.Fatal(err)
		}
		wantInUse(t, db, 0)
	})
}

func TestUnreachableServerFailsCurrentAndRegistersNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, driver, dsn string }{
		{"postgres", "postgres", "postgres://postgres@127.0.0.1:1/test?sslmode=disable"},
		{"mysql", "mysql", "root@tcp(127.0.0.1:1)/test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, err := sql.Open(tc.driver, tc.dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			txs := scoped.New(scopedsql.Tx(db, nil))
			conns := scoped.New(scopedsql.Conn(db))

			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			defer scope.Remove()
			if _, err := txs.Current(ctx); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("Tx: Current = %v, want an error wrapping ECONNREFUSED", err)
			}
			if _, err := conns.Current(ctx); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("Conn: Current = %v, want an error wrapping ECONNREFUSED", err)
			}
			if err := ctx.Err(); err != nil {
				t.Fatalf("the errors came only after the context ended: %v", err)
			}
			if txs.Has(ctx) || conns.Has(ctx) {
				t.Error("a session is registered after the failed creation")
			}
			wantStats(t, txs.Stats(), scoped.Stats{Failed: 1})
			wantStats(t, conns.Stats(), scoped.Stats{Failed: 1})
			wantInUse(t, db, 0)
		})
	}
}

func TestTxBeginsWithItsOwnCopyOfTheOptions(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		table := dbtest.CreateIDTable(t, db, "scopedsql_opts")
		opts := &sql.TxOptions{ReadOnly: true}
		txs := scoped.New(scopedsql.Tx(db, opts))
		opts.ReadOnly = false // too late: Tx copied the options

		ctx, scope := scoped.Begin(dbtest.Ctx(t))
		defer scope.Remove()
		tx, err := txs.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, s.InsertID(table), 1); err == nil {
			t.Fatal("INSERT succeeded in a transaction begun read-only")
		}
	})
}
