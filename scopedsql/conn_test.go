package scopedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// newPinned is the ScopedSession of pinned connections under test.
var newPinned = func(db *sql.DB, opts ...scoped.Option) *scoped.ScopedSession[*sql.Conn] {
	return scopedsql.NewConn(db, opts...)
}

// removeOrHang runs scope.Remove and fails t if it has not returned
// within dbtest.Bound (a hang, not a timing assertion).
func removeOrHang(t *testing.T, scope *scoped.Scope) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- scope.Remove() }()
	select {
	case err := <-done:
		return err
	case <-time.After(dbtest.Bound):
		t.Fatalf("Remove still blocked after %v", dbtest.Bound)
		return nil
	}
}

func sessionAlive(t *testing.T, db *sql.DB, s dbtest.Server, id int64) bool {
	t.Helper()
	q := "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
	if s.Name == "mysql" {
		q = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = ?"
	}
	var n int
	if err := db.QueryRowContext(dbtest.Ctx(t), q, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func TestNewConnGoesBackToThePoolWhenNothingIsLeftOpen(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		var log errorLog
		// A session left clean: pooled as it is on MariaDB too, which
		// NewConn otherwise closes (no reset exists there).
		conns := newPinned(db, log.option(), scopedsql.WithoutSessionReset())

		var ids []int64
		for range 2 {
			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			c, err := conns.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, backendID(t, c, s))
			rows, err := c.QueryContext(ctx, "SELECT 1")
			if err != nil {
				t.Fatal(err)
			}
			if err := rows.Close(); err != nil {
				t.Fatal(err)
			}
			tx, err := c.BeginTx(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			if err := removeOrHang(t, scope); err != nil {
				t.Fatalf("Remove = %v, want nil", err)
			}
			wantInUse(t, db, 0)
		}
		if ids[0] != ids[1] {
			t.Errorf("backends %v: the connection was not reused", ids)
		}
		if errs := log.all(); len(errs) > 0 {
			t.Errorf("teardown errors: %v", errs)
		}
	})
}

// Issue 10 item 2: an unclosed *sql.Rows or a transaction begun by hand on
// the pinned connection makes Remove return at once, with an error saying
// so, and the connection is discarded: its server session ends now, so a
// transaction left open no longer holds its locks. database/sql lets go of
// the *sql.Conn when the leftover ends, and nothing is left behind then.
func TestNewConnRemoveDoesNotWaitForWhatWasLeftOpen(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		for _, leftover := range []string{"rows", "tx"} {
			for _, with := range []string{"another context", "the scope's context, cancelled"} {
				t.Run(leftover+" opened with "+with, func(t *testing.T) {
					t.Parallel()
					testLeftOpen(t, s, newPinned, leftover, with == "another context")
				})
			}
		}
	})
}

// Issue 20 item 9: scoped.New(Conn(db)), the form users write first, with
// the core's default teardown for *sql.Conn, does not wait either: Remove
// returns with the error wrapping ErrConnInUse, and the connection is
// discarded, as with NewConn. It used to wait forever in (*sql.Conn).Close.
func TestConnFactoryRemoveDoesNotWaitForWhatWasLeftOpen(t *testing.T) {
	t.Parallel()
	byNew := func(db *sql.DB, opts ...scoped.Option) *scoped.ScopedSession[*sql.Conn] {
		return scoped.New(scopedsql.Conn(db), opts...)
	}
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		for _, leftover := range []string{"rows", "tx"} {
			for _, with := range []string{"another context", "the scope's context, cancelled"} {
				t.Run(leftover+" opened with "+with, func(t *testing.T) {
					t.Parallel()
					testLeftOpen(t, s, byNew, leftover, with == "another context")
				})
			}
		}
	})
}

func testLeftOpen(t *testing.T, s dbtest.Server, newConns func(*sql.DB, ...scoped.Option) *scoped.ScopedSession[*sql.Conn],
	leftover string, otherCtx bool) {
	db := openDB(t, s)
	table := dbtest.CreateIDTable(t, db, "scopedsql_leftover")
	var log errorLog
	conns := newConns(db, log.option())

	parent, cancelScope := context.WithCancel(dbtest.Ctx(t))
	defer cancelScope()
	ctx, scope := scoped.Begin(parent)
	// The leftover's own context ends only when the test says so: a
	// context.Background as far as the scope can tell.
	leftCtx, endLeftover := context.WithCancel(context.Background())
	defer endLeftover()
	if !otherCtx {
		leftCtx = ctx
	}
	c, err := conns.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	backend := backendID(t, c, s)
	switch leftover {
	case "rows":
		rows, err := c.QueryContext(leftCtx, "SELECT 1 UNION ALL SELECT 2")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
	case "tx":
		tx, err := c.BeginTx(leftCtx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.ExecContext(leftCtx, s.InsertID(table), 7); err != nil {
			t.Fatal(err)
		}
	}
	if !otherCtx {
		// As scoped.Run and scopedhttp do before teardown: the leftover
		// may close itself first, or not.
		cancelScope()
	}

	err = removeOrHang(t, scope)
	switch {
	case errors.Is(err, scopedsql.ErrConnInUse):
	case !otherCtx && (err == nil || errors.Is(err, sql.ErrConnDone)):
		// database/sql ended the leftover on the cancellation before the
		// teardown looked: a Rows is closed and the connection pooled; a
		// Tx is rolled back and database/sql closes the *sql.Conn itself.
		t.Logf("the leftover ended itself first: %v", err)
	default:
		t.Fatalf("Remove = %v, want an error wrapping ErrConnInUse", err)
	}
	if errors.Is(err, scopedsql.ErrConnInUse) {
		if errs := log.all(); len(errs) != 1 || !errors.Is(errs[0], scopedsql.ErrConnInUse) {
			t.Errorf("teardown hook saw %v, want the ErrConnInUse error", errs)
		}
		testkit.Eventually(t, "the discarded connection's server session still exists", func() bool {
			return !sessionAlive(t, db, s, backend)
		})
	}
	if leftover == "tx" {
		// The abandoned transaction is gone with its session: its row is
		// not there and its lock is free (the insert would wait for it).
		if _, err := db.ExecContext(dbtest.Ctx(t), s.InsertID(table), 7); err != nil {
			t.Fatalf("insert of the row the abandoned transaction held: %v", err)
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{7}) {
			t.Errorf("ids = %v, want [7] (only the new insert)", got)
		}
	}
	endLeftover()
	testkit.Eventually(t, "the pinned connection still counts as in use after its leftover ended", func() bool {
		return db.Stats().InUse == 0
	})
}

// A transaction of the scope begun on the scope's own pinned connection
// is ended before the connection (creation order), so the connection's
// teardown finds nothing open: no ErrConnInUse, and it goes back to the
// pool, committed work saved.
func TestNewConnWithTheScopesTxOnItEndsCleanly(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		table := dbtest.CreateIDTable(t, db, "scopedsql_conntx")
		var log errorLog
		conns := newPinned(db, log.option())
		txs := scoped.New(func(ctx context.Context) (*sql.Tx, error) {
			c, err := conns.Current(ctx)
			if err != nil {
				return nil, err
			}
			return c.BeginTx(context.WithoutCancel(ctx), nil)
		}, log.option())

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
				err = removeOrHang(t, scope)
			}
			if err != nil {
				t.Fatalf("id %d: %v", id, err)
			}
			wantInUse(t, db, 0)
		}
		if errs := log.all(); len(errs) > 0 {
			t.Errorf("teardown errors: %v", errs)
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1}) {
			t.Errorf("ids = %v, want [1]", got)
		}
	})
}
