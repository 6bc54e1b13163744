package scopedhttp_test

import (
	"context"
	"fmt"
	"net/http"
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

// Review 9: Manual mode on the real engines, through a real server.
// Each step is the handler's: "insert N" in the request's transaction,
// "commit" by hand (ScopedSession.Commit), and the status it answers
// with. The handler's answer stands; the rows are what it committed; the
// OnCommit hook runs once if anything was saved; the uncommitted hook
// sees exactly the 2xx/3xx answers given over a transaction left open,
// with their status; and nothing else is logged but the core's report
// that a unit with work saved in part runs no hook.
func TestReview9ManualHandCommitsAndTheUncommittedHook(t *testing.T) {
	for _, c := range []struct {
		steps     []string
		status    int
		rows      []int64
		committed bool // the OnCommit hook runs
		warned    int  // the status the uncommitted hook sees; 0: not called
	}{
		{[]string{"insert 1", "commit", "commit"}, 200, []int64{1}, true, 0},
		{[]string{"insert 1", "commit", "insert 2", "commit"}, 201, []int64{1, 2}, true, 0},
		{[]string{"insert 1", "commit", "insert 2", "commit", "commit"}, 500, []int64{1, 2}, true, 0},
		{[]string{"commit", "commit"}, 204, nil, false, 0},
		{[]string{"insert 1", "commit"}, 500, []int64{1}, true, 0},
		{[]string{"insert 1", "commit", "insert 2"}, 201, []int64{1}, false, 201},
		{[]string{"insert 1", "commit", "insert 2"}, 303, []int64{1}, false, 303},
		{[]string{"insert 1", "commit", "insert 2"}, 0, []int64{1}, false, 200},
		{[]string{"insert 1", "commit", "insert 2"}, 409, []int64{1}, false, 0},
		{[]string{"insert 1"}, 202, nil, false, 202},
		{[]string{"insert 1"}, 500, nil, false, 0},
	} {
		name := fmt.Sprintf("%s/%d", strings.Join(c.steps, ","), c.status)
		// Saved in part: the first transaction committed, the second rolled back.
		partial := len(c.rows) > 0 && !c.committed
		dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
			t.Run(name, func(t *testing.T) {
				db := openDB(t, s)
				table := dbtest.CreateIDTable(t, db, "r9_manual")
				txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
				logged := captureLog(t)
				var mu sync.Mutex
				var warned []int
				hooks := make(chan string, 2)
				h, returned := returnedSignal(scopedhttp.Middleware(scopedhttp.Bind(txs),
					scopedhttp.WithUncommittedHook(func(r *http.Request, status int) {
						mu.Lock()
						warned = append(warned, status)
						mu.Unlock()
					}))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					ctx := r.Context()
					_ = scoped.OnCommit(ctx, func(context.Context) { hooks <- "commit" })
					for _, step := range c.steps {
						var err error
						if id, ok := strings.CutPrefix(step, "insert "); ok {
							tx, cerr := txs.Current(ctx)
							if err = cerr; err == nil {
								_, err = tx.ExecContext(ctx, s.InsertID(table), id)
							}
						} else {
							err = txs.Commit(ctx)
						}
						if err != nil {
							t.Errorf("%s: %v", step, err)
						}
					}
					if c.status != 0 {
						w.WriteHeader(c.status)
					}
					_, _ = w.Write([]byte("handler's own"))
				})))
				ts := serve(t, h)
				res := do(dbtest.Ctx(t), ts, http.MethodPost, "/")
				testkit.WaitFor(t, returned, "the handler to return")
				want := c.status
				if want == 0 {
					want = http.StatusOK
				}
				if res.err != nil || res.status != want || (want != 204 && res.body != "handler's own") {
					t.Errorf("client got %d %q, %v; want the handler's %d", res.status, res.body, res.err, want)
				}
				if ids := dbtest.IDs(t, db, table); !slices.Equal(ids, c.rows) {
					t.Errorf("rows %v, want %v", ids, c.rows)
				}
				if c.committed {
					testkit.WaitFor(t, hooks, "the OnCommit hook")
				}
				select {
				case k := <-hooks:
					t.Errorf("unexpected %s hook", k)
				default:
				}
				mu.Lock()
				defer mu.Unlock()
				if c.warned == 0 && len(warned) != 0 || c.warned != 0 && !slices.Equal(warned, []int{c.warned}) {
					t.Errorf("uncommitted hook saw %v, want %d (0: not called)", warned, c.warned)
				}
				l := logged.String()
				if partial && (strings.Count(l, "\n") != 1 || !strings.Contains(l, "unit hooks not run") || !strings.Contains(l, "part of its work is saved")) ||
					!partial && l != "" {
					t.Errorf("logged %q (partial=%v)", l, partial)
				}
			})
		})
	}
}
