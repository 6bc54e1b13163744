package scopedhttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// A step a lost-work handler takes on its request's transactions.
type lostStep struct {
	id  int64
	end string // "commit" (by hand, must succeed), "fail" (by hand, must fail), "remove" (by hand), "" (left to the middleware)
}

// The cases of commit 8aa76c7 through the middleware, on the real
// PostgreSQL: a hand commit (ScopedSession.Commit) that failed is work
// lost, whatever the handler answers after ignoring the error; a
// transaction removed by hand (ScopedSession.Remove) is the handler's
// decision and changes nothing. In Autocommit the client must never get a
// 2xx for lost work; in Manual the response is not held, so the handler's
// status stands and the rest is rolled back.
func TestLostWorkCases(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	cases := []struct {
		name   string
		mode   scopedhttp.CommitMode
		steps  []lostStep
		status int // the handler's
		// What the client gets: its status and a piece of the body.
		wantCode int
		wantBody string
		wantIDs  []int64
		wantHook string // "commit", "rollback" or "" (neither kind)
		uncommit bool   // the Manual uncommitted hook is called
	}{
		{name: "autocommit/lost alone", mode: scopedhttp.Autocommit,
			steps: []lostStep{{id: 1000000, end: "fail"}}, status: http.StatusCreated,
			wantCode: 500, wantBody: "were not saved", wantHook: "rollback"},
		{name: "autocommit/saved then lost", mode: scopedhttp.Autocommit,
			steps: []lostStep{{id: 1, end: "commit"}, {id: 1000001, end: "fail"}}, status: http.StatusOK,
			wantCode: 500, wantBody: "partially saved", wantIDs: []int64{1}},
		{name: "autocommit/lost then rest committed", mode: scopedhttp.Autocommit,
			steps: []lostStep{{id: 1000000, end: "fail"}, {id: 2}}, status: http.StatusCreated,
			wantCode: 500, wantBody: "partially saved", wantIDs: []int64{2}},
		{name: "autocommit/removed by hand alone", mode: scopedhttp.Autocommit,
			steps: []lostStep{{id: 3, end: "remove"}}, status: http.StatusCreated,
			wantCode: 201, wantHook: "commit"},
		{name: "autocommit/removed by hand then rest", mode: scopedhttp.Autocommit,
			steps: []lostStep{{id: 3, end: "remove"}, {id: 4}}, status: http.StatusCreated,
			wantCode: 201, wantIDs: []int64{4}, wantHook: "commit"},
		{name: "autocommit/saved, removed by hand", mode: scopedhttp.Autocommit,
			steps: []lostStep{{id: 5, end: "commit"}, {id: 6, end: "remove"}}, status: http.StatusOK,
			wantCode: 200, wantIDs: []int64{5}, wantHook: "commit"},
		// Manual: the handler answered before the middleware knows
		// anything; its 200 stands. Nothing was open at its return, so
		// the uncommitted hook (sessions still open) is not called.
		{name: "manual/lost alone", mode: scopedhttp.Manual,
			steps: []lostStep{{id: 1000000, end: "fail"}}, status: http.StatusOK,
			wantCode: 200, wantHook: "rollback"},
		{name: "manual/saved then lost", mode: scopedhttp.Manual,
			steps: []lostStep{{id: 7, end: "commit"}, {id: 1000001, end: "fail"}}, status: http.StatusOK,
			wantCode: 200, wantIDs: []int64{7}},
		{name: "manual/removed by hand after a commit", mode: scopedhttp.Manual,
			steps: []lostStep{{id: 8, end: "commit"}, {id: 9, end: "remove"}}, status: http.StatusOK,
			wantCode: 200, wantIDs: []int64{8}, wantHook: "commit"},
		{name: "manual/lost then rest left open", mode: scopedhttp.Manual,
			steps: []lostStep{{id: 1000000, end: "fail"}, {id: 10}}, status: http.StatusOK,
			wantCode: 200, wantHook: "rollback", uncommit: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			table := dbtest.CreateCommitFailureTable(t, db, "lostwork") // id >= 1,000,000 fails at COMMIT
			txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
			var hooks testkit.Log
			hooksDone := make(chan struct{})
			var uncommitted atomic.Int64
			h := scopedhttp.Middleware(scopedhttp.Bind(txs), scopedhttp.WithCommitMode(c.mode),
				scopedhttp.WithUncommittedHook(func(*http.Request, int) { uncommitted.Add(1) }),
			)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				scoped.OnCommit(ctx, func(context.Context) { hooks.Add("commit"); close(hooksDone) })
				scoped.OnRollback(ctx, func(context.Context) { hooks.Add("rollback"); close(hooksDone) })
				for _, st := range c.steps {
					tx, err := txs.Current(ctx)
					if err != nil {
						t.Errorf("Current: %v", err)
						return
					}
					if _, err := tx.ExecContext(ctx, s.InsertID(table), st.id); err != nil {
						t.Errorf("insert %d: %v", st.id, err)
						return
					}
					switch st.end {
					case "commit":
						if err := txs.Commit(ctx); err != nil {
							t.Errorf("hand commit of %d: %v", st.id, err)
						}
					case "fail":
						if err := txs.Commit(ctx); err == nil {
							t.Errorf("hand commit of %d succeeded; the table should fail it", st.id)
						} // and the handler ignores it
					case "remove":
						if err := txs.Remove(ctx); err != nil {
							t.Errorf("hand remove of %d: %v", st.id, err)
						}
					}
				}
				w.WriteHeader(c.status)
			}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
			if rec.Code != c.wantCode || !strings.Contains(rec.Body.String(), c.wantBody) {
				t.Errorf("client got %d %q; want %d with %q", rec.Code, rec.Body, c.wantCode, c.wantBody)
			}
			if got := dbtest.IDs(t, db, table); !slices.Equal(got, c.wantIDs) {
				t.Errorf("ids %v, want %v", got, c.wantIDs)
			}
			if c.wantHook != "" {
				testkit.WaitFor(t, hooksDone, "the unit's hook")
			}
			// A decision to run neither kind is taken at the scope's end,
			// before ServeHTTP returns.
			var want []string
			if c.wantHook != "" {
				want = []string{c.wantHook}
			}
			if got := hooks.List(); !slices.Equal(got, want) {
				t.Errorf("hooks %q, want %q", got, want)
			}
			if got := uncommitted.Load() > 0; got != c.uncommit {
				t.Errorf("uncommitted hook called: %v, want %v", got, c.uncommit)
			}
		})
	}
}
