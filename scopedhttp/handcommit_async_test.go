package scopedhttp_test

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// awaitPartial is where a scope's end, and the retry decision of its
// owner, wait for a hand commit still running on another goroutine.
const awaitPartial = "github.com/go-scoped/scoped.(*Scope).awaitPartial"

// A handler that started a hand commit (txs.Commit) on a goroutine of its
// own and returned, before that commit finished, after a scoped.Run with
// scoped.WithRetry inside it asked for the request to run again: the
// retry decision must wait for the commit, which saves a row, and not run
// the request again (it did: the decision read "nothing committed by
// hand" while the commit ran, and each run saved its row). The commit is
// let go only once the middleware waits for it.
func TestRetryAskedDuringAHandCommitIsNotRetried(t *testing.T) {
	for _, c := range []struct {
		name     string
		more     bool // after the hand commit, write a row whose COMMIT fails, and answer 201
		wantCode int
		wantBody string
	}{
		// The handler answers the Run's error: its answer stands, as
		// when the hand commit had finished (TestRetryAskedAfterAHandCommitIsNotRetried).
		{"handler answers the error", false, http.StatusConflict, "conflict"},
		// The rest's commit fails: part of the request is saved.
		{"rest fails at commit", true, http.StatusInternalServerError, "partially saved"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := dbtest.Postgres(t)
			db := openDB(t, s)
			table := dbtest.CreateCommitFailureTable(t, db, "hand_async") // id >= 1,000,000 fails at COMMIT
			started, release := make(chan struct{}, 8), make(chan struct{})
			txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil),
				scoped.WithCommit(func(_ context.Context, tx *sql.Tx) error {
					started <- struct{}{}
					<-release
					return tx.Commit()
				}))
			errConflict := errors.New("conflict")
			retryable := func(err error) bool { return errors.Is(err, errConflict) }
			var commits sync.WaitGroup
			runs := 0
			h := scopedhttp.Middleware(scopedhttp.Bind(txs), scopedhttp.WithCommitMode(scopedhttp.Autocommit),
				scopedhttp.WithRetry(3, retryable))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				runs++
				tx, err := txs.Current(ctx)
				if err == nil {
					_, err = tx.ExecContext(ctx, s.InsertID(table), runs)
				}
				if err != nil {
					t.Errorf("handler: %v", err)
				}
				commits.Add(1)
				go func() {
					defer commits.Done()
					if err := txs.Commit(ctx); err != nil {
						t.Errorf("hand commit: %v", err)
					}
				}()
				<-started
				err = scoped.Run(ctx, func(context.Context) error { return errConflict }, scoped.WithRetry(2, retryable))
				if c.more {
					tx, err := txs.Current(ctx) // a new transaction, decided at the return
					if err == nil {
						_, err = tx.ExecContext(ctx, s.InsertID(table), 1000000)
					}
					if err != nil {
						t.Errorf("handler: %v", err)
					}
					w.WriteHeader(http.StatusCreated)
					return
				}
				http.Error(w, err.Error(), http.StatusConflict)
			}))
			parked := testkit.CloseWhenParked(awaitPartial, release)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
			commits.Wait()
			if !parked() {
				t.Errorf("nothing waited for the hand commit")
			}
			if ids := dbtest.IDs(t, db, table); runs != 1 || !slices.Equal(ids, []int64{1}) {
				t.Errorf("handler ran %d times, rows %v; want one run and row [1]", runs, ids)
			}
			if rec.Code != c.wantCode || !strings.Contains(rec.Body.String(), c.wantBody) {
				t.Errorf("client got %d %q, want %d %q", rec.Code, rec.Body, c.wantCode, c.wantBody)
			}
		})
	}
}
