package scopedpgxtest

// Review 7 of Isolate: every way code commits leaves nothing after the
// test, a handler that ends its goroutine mid-request and a goroutine left
// with a transaction open still end clean, and the connection is gone.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

// backendPID is the server's id of d's connection.
func backendPID(t testing.TB, d *DB) int {
	t.Helper()
	var pid int
	if err := d.QueryRow(dbtest.Ctx(t), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// backendGone reports whether the server no longer has the backend pid.
func backendGone(t testing.TB, pool *pgxpool.Pool, pid int) bool {
	var n int
	if err := pool.QueryRow(dbtest.Ctx(t), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 0
}

// Scope.Commit, a hand ScopedSession.Commit followed by more work in the
// same scope, a nested Run released into its parent and a nested unit
// committed by hand: the test sees every row and runs every OnCommit
// hook; after it, no row, no connection acquired, the backend gone.
func TestReview7EveryCommitIsGoneAfterTheTest(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_r7commits")
	var pid int
	t.Run("test", func(t *testing.T) {
		db := Isolate(t, pool)
		pid = backendPID(t, db)
		txs := db.NewTx(scoped.WithTeardownErrorHook(nil))
		var hooks []int
		ins := func(ctx context.Context, id int) {
			t.Helper()
			tx, err := txs.Current(ctx)
			if err == nil {
				err = insert(ctx, tx, table, id)
			}
			if err == nil {
				err = scoped.OnCommit(ctx, func(context.Context) { hooks = append(hooks, id) })
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		ctx := dbtest.Ctx(t)

		sctx, scope := scoped.Begin(ctx)
		ins(sctx, 1)
		if err := scope.Commit(); err != nil {
			t.Fatal(err)
		}

		sctx, scope = scoped.Begin(ctx)
		ins(sctx, 2)
		if err := txs.Commit(sctx); err != nil {
			t.Fatal(err)
		}
		ins(sctx, 3) // a new transaction of the same scope
		if err := scope.Commit(); err != nil {
			t.Fatal(err)
		}

		if err := scoped.Run(ctx, func(ctx context.Context) error {
			ins(ctx, 4)
			if err := scoped.Run(ctx, func(ctx context.Context) error { ins(ctx, 5); return nil }); err != nil {
				return err
			}
			cctx, child := scoped.Begin(ctx)
			ins(cctx, 6)
			if err := txs.Commit(cctx); err != nil { // the child's savepoint, released by hand
				return err
			}
			return child.Remove()
		}); err != nil {
			t.Fatal(err)
		}

		if got, want := ids(t, db, table), []int{1, 2, 3, 4, 5, 6}; !slices.Equal(got, want) {
			t.Errorf("the test sees %v, want %v", got, want)
		}
		slices.Sort(hooks)
		if want := []int{1, 2, 3, 4, 5, 6}; !slices.Equal(hooks, want) {
			t.Errorf("OnCommit hooks ran for %v, want %v", hooks, want)
		}
		if got := ids(t, pool, table); len(got) != 0 {
			t.Errorf("the pool sees %v during the test", got)
		}
	})
	if got := ids(t, pool, table); len(got) != 0 {
		t.Errorf("after the test: %v", got)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired after the test", n)
	}
	testkit.Eventually(t, "the test's backend gone", func() bool { return backendGone(t, pool, pid) })
}

// A handler that ends its goroutine mid-request (t.FailNow from the
// handler) under scopedhttp in Autocommit: its unit rolls back and runs
// its OnRollback hook, the transaction's slot is free for the next
// request, and the test's end reports nothing and leaves nothing.
func TestReview7FailNowInAHandlersGoroutine(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_r7failnow")
	ft := &dbtest.FakeTB{TB: t}
	db := Isolate(ft, pool)
	pid := backendPID(t, db)
	txs := db.NewTx(scoped.WithTeardownErrorHook(nil))
	rolledBack := make(chan int, 4)
	mw := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))
	srv := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id := len(r.URL.Query().Get("id"))
		tx, err := scoped.Current[pgx.Tx](ctx)
		if err == nil {
			err = insert(ctx, tx, table, id)
		}
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_ = scoped.OnRollback(ctx, func(context.Context) { rolledBack <- id })
		if r.URL.Query().Has("fail") {
			runtime.Goexit() // t.FailNow
		}
		w.WriteHeader(http.StatusCreated)
	})))
	post := func(query string) error {
		req, err := http.NewRequestWithContext(dbtest.Ctx(t), http.MethodPost, srv.URL+"?"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return errors.New(resp.Status)
		}
		return nil
	}
	if err := post("id=x"); err != nil {
		t.Fatal(err)
	}
	if err := post("id=xx&fail"); err == nil {
		t.Error("the request whose handler exited got an answer")
	}
	if got := <-rolledBack; got != 2 {
		t.Errorf("OnRollback hook of %d, want 2", got)
	}
	if err := post("id=xxx"); err != nil {
		t.Errorf("a request after the failed one: %v", err)
	}
	srv.Close()
	if got, want := ids(t, db, table), []int{1, 3}; !slices.Equal(got, want) {
		t.Errorf("the test sees %v, want %v", got, want)
	}
	if errs := ft.End(); len(errs) != 0 {
		t.Errorf("the isolated database's end: %q", errs)
	}
	if got := ids(t, pool, table); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired after the test", n)
	}
	testkit.Eventually(t, "the test's backend gone", func() bool { return backendGone(t, pool, pid) })
}

// A goroutine the test left with a scope's transaction open, which it
// commits after the test ended: the end neither waits for it nor reports
// anything, the late commit fails instead of saving, nothing is left.
func TestReview7LeftoverGoroutineCommitsNothing(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_r7leftover")
	ft := &dbtest.FakeTB{TB: t}
	db := Isolate(ft, pool)
	txs := db.NewTx(scoped.WithTeardownErrorHook(nil))
	began, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		ctx, scope := scoped.Begin(context.Background())
		tx, err := txs.Current(ctx)
		if err == nil {
			err = insert(ctx, tx, table, 1)
		}
		close(began)
		<-release
		done <- errors.Join(err, scope.Commit())
	}()
	<-began
	if errs := ft.End(); len(errs) != 0 {
		t.Errorf("the isolated database's end: %q", errs)
	}
	close(release)
	if err := testkit.WaitFor(t, done, "the late commit"); err == nil {
		t.Error("a commit after the test ended succeeded")
	}
	if got := ids(t, pool, table); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired after the test", n)
	}
}
