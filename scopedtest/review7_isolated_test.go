package scopedtest_test

// Review 7 of IsolatedDB: every way code commits leaves nothing after the
// test, a test that fails inside a handler's goroutine or leaves a
// goroutine behind still ends clean, and the one connection is closed.

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
	"github.com/go-scoped/scoped/scopedtest"
)

// backendGone reports whether the server no longer has the connection
// whose id is id.
func backendGone(t testing.TB, plain *sql.DB, s dbtest.Server, id int64) bool {
	q := "SELECT count(*) FROM pg_stat_activity WHERE pid = $1"
	if s.Name != "postgres" {
		q = "SELECT count(*) FROM information_schema.processlist WHERE id = ?"
	}
	var n int
	if err := plain.QueryRowContext(dbtest.Ctx(t), q, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 0
}

// A test that commits in every way the code can (Scope.Commit, a hand
// ScopedSession.Commit and then more work in the same scope, a nested Run
// released into its parent, a pinned connection's autocommit statement)
// sees its rows and its OnCommit hooks during the test, and leaves no row
// and no connection after it.
func TestReview7EveryCommitIsGoneAfterTheTest(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		plain := plainDB(t, s)
		table := dbtest.CreateIDTable(t, plain, "scopedtest_r7commits")
		var backend int64
		t.Run("inside", func(t *testing.T) {
			db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
			if err := db.QueryRowContext(dbtest.Ctx(t), s.BackendIDQuery()).Scan(&backend); err != nil {
				t.Fatal(err)
			}
			txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
			conns := scoped.New(scopedsql.Conn(db))
			var hooks []int64
			insert := func(ctx context.Context, id int64) {
				t.Helper()
				tx, err := txs.Current(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, s.InsertID(table), id); err != nil {
					t.Fatal(err)
				}
				if err := scoped.OnCommit(ctx, func(context.Context) { hooks = append(hooks, id) }); err != nil {
					t.Fatal(err)
				}
			}

			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			insert(ctx, 1)
			if err := scope.Commit(); err != nil {
				t.Fatal(err)
			}

			ctx, scope = scoped.Begin(dbtest.Ctx(t))
			insert(ctx, 2)
			if err := txs.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			insert(ctx, 3) // a new transaction of the same scope
			if err := scope.Commit(); err != nil {
				t.Fatal(err)
			}

			if err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
				insert(ctx, 4)
				return scoped.Run(ctx, func(ctx context.Context) error { insert(ctx, 5); return nil })
			}); err != nil {
				t.Fatal(err)
			}

			ctx, scope = scoped.Begin(dbtest.Ctx(t))
			c, err := conns.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.ExecContext(ctx, s.InsertID(table), 6); err != nil {
				t.Fatal(err)
			}
			if err := scope.Remove(); err != nil {
				t.Fatal(err)
			}

			if got, want := dbtest.IDs(t, db, table), []int64{1, 2, 3, 4, 5, 6}; !slices.Equal(got, want) {
				t.Errorf("the test sees %v, want %v", got, want)
			}
			slices.Sort(hooks)
			if want := []int64{1, 2, 3, 4, 5}; !slices.Equal(hooks, want) {
				t.Errorf("OnCommit hooks ran for %v, want %v", hooks, want)
			}
			if got := dbtest.IDs(t, plain, table); len(got) != 0 {
				t.Errorf("another connection sees %v during the test", got)
			}
		})
		if got := dbtest.IDs(t, plain, table); len(got) != 0 {
			t.Errorf("after the test: %v", got)
		}
		testkit.Eventually(t, "the test's connection closed", func() bool { return backendGone(t, plain, s, backend) })
	})
}

// A handler that ends its goroutine mid-request (t.FailNow called from
// the handler, which runs on the server's goroutine) under scopedhttp in
// Autocommit: the request's unit rolls back and runs its OnRollback
// hooks, the rest of the test keeps its database, and the test's end
// reports nothing and leaves no row and no connection.
func TestReview7FailNowInAHandlersGoroutine(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		plain := plainDB(t, s)
		table := dbtest.CreateIDTable(t, plain, "scopedtest_r7failnow")
		ft := &dbtest.FakeTB{TB: t}
		db := scopedtest.IsolatedDB(ft, s.Driver, s.DSN)
		var backend int64
		if err := db.QueryRowContext(dbtest.Ctx(t), s.BackendIDQuery()).Scan(&backend); err != nil {
			t.Fatal(err)
		}
		txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
		rolledBack := make(chan int64, 4)
		mw := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))
		srv := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			tx, err := scoped.Current[*sql.Tx](ctx)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			id := int64(len(r.URL.Query().Get("id")))
			if _, err := tx.ExecContext(ctx, s.InsertID(table), id); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			_ = scoped.OnRollback(ctx, func(context.Context) { rolledBack <- id })
			if r.URL.Query().Has("fail") {
				runtime.Goexit() // t.FailNow
			}
			w.WriteHeader(http.StatusCreated)
		})))
		get := func(query string) error {
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
		if err := get("id=x"); err != nil {
			t.Fatal(err)
		}
		if err := get("id=xx&fail"); err == nil {
			t.Error("the request whose handler exited got an answer")
		}
		if got := <-rolledBack; got != 2 {
			t.Errorf("OnRollback hook of %d, want 2", got)
		}
		if err := get("id=xxx"); err != nil {
			t.Errorf("a request after the failed one: %v", err)
		}
		srv.Close()
		if got, want := dbtest.IDs(t, db, table), []int64{1, 3}; !slices.Equal(got, want) {
			t.Errorf("the test sees %v, want %v", got, want)
		}
		if errs := ft.End(); len(errs) != 0 {
			t.Errorf("the isolated database's end: %q", errs)
		}
		if got := dbtest.IDs(t, plain, table); len(got) != 0 {
			t.Errorf("left behind: %v", got)
		}
		testkit.Eventually(t, "the test's connection closed", func() bool { return backendGone(t, plain, s, backend) })
	})
}

// A goroutine the test left behind with a transaction open, which it
// commits only after the test ended: the test's end reports nothing and
// waits for nothing, the late commit fails instead of saving, and nothing
// is left.
func TestReview7LeftoverGoroutineCommitsNothing(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		plain := plainDB(t, s)
		table := dbtest.CreateIDTable(t, plain, "scopedtest_r7leftover")
		ft := &dbtest.FakeTB{TB: t}
		db := scopedtest.IsolatedDB(ft, s.Driver, s.DSN)
		began, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
		go func() {
			tx, err := db.BeginTx(context.Background(), nil)
			if err != nil {
				close(began)
				done <- err
				return
			}
			_, err = tx.ExecContext(context.Background(), s.InsertID(table), 1)
			close(began)
			<-release
			done <- errors.Join(err, tx.Commit())
		}()
		<-began
		if errs := ft.End(); len(errs) != 0 {
			t.Errorf("the isolated database's end: %q", errs)
		}
		close(release)
		if err := <-done; err == nil {
			t.Error("a commit after the test ended succeeded")
		}
		if got := dbtest.IDs(t, plain, table); len(got) != 0 {
			t.Errorf("left behind: %v", got)
		}
	})
}
