package scopedhttp_test

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// A handler that commits part of its work by hand (txs.Commit, as for a
// stream) and then writes more, whose commit at the handler's return
// fails: part of the request is saved. The client must not be told
// "not saved" (it would send the request again and save that part
// twice), and the unit's OnRollback hooks must not claim an undo: the
// outcome is partial, as units.md says of a unit removed after a hand
// commit. (It failed before: ErrNotCommitted, a 500 saying nothing was
// saved, and the OnRollback hook ran.)
func TestHandCommitThenFailedCommitIsPartial(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	table := dbtest.CreateCommitFailureTable(t, db, "rv2_part") // id >= 1,000,000 fails at COMMIT
	txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
	var hooks testkit.Log
	var commitErr error
	h := scopedhttp.Middleware(scopedhttp.Bind(txs), scopedhttp.WithCommitMode(scopedhttp.Autocommit),
		scopedhttp.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
			commitErr = err
			scopedhttp.DefaultErrorHandler(w, r, err)
		}))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		scoped.OnCommit(ctx, func(context.Context) { hooks.Add("commit") })
		scoped.OnRollback(ctx, func(context.Context) { hooks.Add("rollback") })
		tx, err := txs.Current(ctx)
		if err == nil {
			_, err = tx.ExecContext(ctx, s.InsertID(table), 1)
		}
		if err == nil {
			err = txs.Commit(ctx) // saved now
		}
		if err == nil {
			tx, err = txs.Current(ctx) // a new transaction, decided at the return
		}
		if err == nil {
			_, err = tx.ExecContext(ctx, s.InsertID(table), 1000000)
		}
		if err != nil {
			t.Errorf("handler: %v", err)
		}
		w.WriteHeader(http.StatusCreated)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if ids := dbtest.IDs(t, db, table); len(ids) != 1 || ids[0] != 1 {
		t.Fatalf("ids %v, want [1]: the hand commit saved, the second commit failed", ids)
	}
	if !errors.Is(commitErr, scoped.ErrPartiallyCommitted) || errors.Is(commitErr, scoped.ErrNotCommitted) {
		t.Errorf("error handler got %v; want ErrPartiallyCommitted (id 1 is saved), not ErrNotCommitted", commitErr)
	}
	if !strings.Contains(rec.Body.String(), "partially saved") {
		t.Errorf("client got %d %q; want 500 saying the changes were partially saved", rec.Code, rec.Body)
	}
	if got := hooks.List(); len(got) != 0 {
		t.Errorf("hooks %q ran; want neither kind for a partial outcome", got)
	}
}

// The contract doc.go states: WithRetry runs a request again when its
// commit, or a scoped.Run with scoped.WithRetry inside it, fails with a
// conflict; a conflict reported to a statement the handler runs itself
// (every MariaDB deadlock) is the handler's error and is not retried.
// Two concurrent increments, one conflicts: with the work in a retried
// Run both succeed; run directly in the handler, one gets its conflict.
func TestConflictAtTheHandlersOwnStatementIsTheHandlers(t *testing.T) {
	for _, c := range []struct {
		name   string
		server func(testing.TB) dbtest.Server
		opts   *sql.TxOptions
		lock   string
	}{
		{"postgres serializable", dbtest.Postgres, &sql.TxOptions{Isolation: sql.LevelSerializable}, ""},
		{"mariadb deadlocks", dbtest.MySQL, nil, " LOCK IN SHARE MODE"},
	} {
		for _, inRun := range []bool{false, true} {
			t.Run(c.name+"/inRun="+strconv.FormatBool(inRun), func(t *testing.T) {
				s := c.server(t)
				db := openDB(t, s)
				const n = 2
				counter := dbtest.CreateCounter(t, db, "rv2_direct", n)
				counter.Lock, counter.Param = c.lock, placeholder(s, 1)
				txs := scopedsql.NewTx(db, c.opts, scoped.WithTeardownErrorHook(nil))
				increment := func(ctx context.Context) error {
					tx, err := txs.Current(ctx)
					if err != nil {
						return err
					}
					return counter.Increment(ctx, tx, 1)
				}
				if inRun {
					increment = func(ctx context.Context) error {
						return scoped.Run(ctx, func(ctx context.Context) error {
							tx, err := txs.Current(ctx)
							if err != nil {
								return err
							}
							return counter.Increment(ctx, tx, 1)
						}, scoped.WithRetry(3, scopedsql.Retryable))
					}
				}
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if err := increment(r.Context()); err != nil {
						code := http.StatusInternalServerError
						if scopedsql.Retryable(err) {
							code = http.StatusConflict
						}
						http.Error(w, err.Error(), code)
						return
					}
					w.WriteHeader(http.StatusCreated)
				})
				ts := serve(t, scopedhttp.Middleware(scopedhttp.Bind(txs), scopedhttp.WithCommitMode(scopedhttp.Autocommit),
					scopedhttp.WithRetry(5, scopedsql.Retryable))(h))
				var wg sync.WaitGroup
				got := make([]response, n)
				for i := range n {
					wg.Add(1)
					go func() { defer wg.Done(); got[i] = post(t, ts, ts.URL, "") }()
				}
				wg.Wait()
				counts := map[int]int{}
				for _, g := range got {
					counts[g.status]++
				}
				want := map[int]int{http.StatusCreated: 1, http.StatusConflict: 1}
				if inRun {
					want = map[int]int{http.StatusCreated: 2}
				}
				if len(counts) != len(want) || counts[201] != want[201] || counts[409] != want[409] {
					t.Errorf("statuses %v, want %v (responses %+v)", counts, want, got)
				}
			})
		}
	}
}

// A handler that committed a row by hand, then had a scoped.Run with
// scoped.WithRetry inside it fail retryably (which asks the middleware to
// run the request again), is not run again: the hand-committed row would
// be saved once per run (it was: rows [1 2 3]).
func TestRetryAskedAfterAHandCommitIsNotRetried(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	table := dbtest.CreateIDTable(t, db, "hand_retry")
	txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
	errConflict := errors.New("conflict")
	retryable := func(err error) bool { return errors.Is(err, errConflict) }
	runs := 0
	h := scopedhttp.Middleware(scopedhttp.Bind(txs), scopedhttp.WithCommitMode(scopedhttp.Autocommit),
		scopedhttp.WithRetry(3, retryable))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		runs++
		tx, err := txs.Current(ctx)
		if err == nil {
			_, err = tx.ExecContext(ctx, s.InsertID(table), runs)
		}
		if err == nil {
			err = txs.Commit(ctx) // saved now
		}
		if err != nil {
			t.Errorf("handler: %v", err)
		}
		err = scoped.Run(ctx, func(context.Context) error { return errConflict }, scoped.WithRetry(2, retryable))
		http.Error(w, err.Error(), http.StatusConflict)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if ids := dbtest.IDs(t, db, table); runs != 1 || len(ids) != 1 {
		t.Errorf("handler ran %d times, rows %v; want one run and one row", runs, ids)
	}
	if rec.Code != http.StatusConflict {
		t.Errorf("client got %d %q, want the handler's 409", rec.Code, rec.Body)
	}
}
