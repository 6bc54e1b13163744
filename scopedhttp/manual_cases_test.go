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

// handCase is a handler that inserts id 1, commits it by hand
// (txs.Commit), and then, with more, inserts id 2 in the new transaction
// the scope hands out, before ending as end says.
type handCase struct {
	name   string
	mode   []scopedhttp.Option
	more   bool
	end    string // "500", "200", "panic", "cancel"
	status int    // what the client must get
	body   string // a part of its body
	rows   []int64
	hooks  []string
	warned bool // the uncommitted hook reports the request
}

// Hand commits under every way a request ends, on the real engines: the
// client's status and the error handler's text, the rows, the unit's hooks
// and the Manual mode's uncommitted report must all tell the truth.
func TestHandCommitThenEveryEnding(t *testing.T) {
	manual := []scopedhttp.Option{}
	auto := []scopedhttp.Option{scopedhttp.WithCommitMode(scopedhttp.Autocommit)}
	cases := []handCase{
		{"manual/500", manual, false, "500", 500, "handler failed", []int64{1}, []string{"commit"}, false},
		{"manual/more/500", manual, true, "500", 500, "handler failed", []int64{1}, nil, false},
		{"manual/200", manual, false, "200", 200, "ok", []int64{1}, []string{"commit"}, false},
		{"manual/more/200", manual, true, "200", 200, "ok", []int64{1}, nil, true},
		{"manual/panic", manual, false, "panic", 0, "", []int64{1}, []string{"commit"}, false},
		{"manual/more/panic", manual, true, "panic", 0, "", []int64{1}, nil, false},
		{"manual/cancel", manual, false, "cancel", 200, "ok", []int64{1}, []string{"commit"}, false},
		// The net rolled the new transaction back before the handler
		// answered 200: the scope had ended, and the uncommitted hook is
		// not called (the client went away; see the report).
		{"manual/more/cancel", manual, true, "cancel", 200, "ok", []int64{1}, nil, false},
		{"auto/500", auto, false, "500", 500, "handler failed", []int64{1}, []string{"commit"}, false},
		{"auto/more/500", auto, true, "500", 500, "handler failed", []int64{1}, nil, false},
		{"auto/more/200", auto, true, "200", 200, "ok", []int64{1, 2}, []string{"commit"}, false},
		{"auto/panic", auto, false, "panic", 0, "", []int64{1}, []string{"commit"}, false},
		{"auto/more/panic", auto, true, "panic", 0, "", []int64{1}, nil, false},
		// The hand-committed row is saved: the client must not be told
		// "not saved" (it would send the request again).
		{"auto/cancel", auto, false, "cancel", 200, "ok", []int64{1}, []string{"commit"}, false},
		{"auto/more/cancel", auto, true, "cancel", 500, "partially saved", []int64{1}, nil, false},
	}
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				table := dbtest.CreateIDTable(t, db, "mc_hand")
				txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
				var hooks testkit.Log
				hooksDone := make(chan struct{}, 2)
				var warned atomic.Bool
				opts := append(slices.Clone(c.mode), scopedhttp.Bind(txs),
					scopedhttp.WithUncommittedHook(func(*http.Request, int) { warned.Store(true) }))
				var cancel context.CancelFunc
				h := scopedhttp.Middleware(opts...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					ctx := r.Context()
					scoped.OnCommit(ctx, func(context.Context) { hooks.Add("commit"); hooksDone <- struct{}{} })
					scoped.OnRollback(ctx, func(context.Context) { hooks.Add("rollback"); hooksDone <- struct{}{} })
					tx, err := txs.Current(ctx)
					if err == nil {
						_, err = tx.ExecContext(ctx, s.InsertID(table), 1)
					}
					if err == nil {
						err = txs.Commit(ctx)
					}
					if err == nil && c.more {
						if tx, err = txs.Current(ctx); err == nil {
							_, err = tx.ExecContext(ctx, s.InsertID(table), 2)
						}
					}
					if err != nil {
						t.Errorf("handler: %v", err)
					}
					w.Header().Set("Content-Type", "text/plain")
					switch c.end {
					case "500":
						w.Header().Set("Content-Length", "14")
						w.WriteHeader(500)
						w.Write([]byte("handler failed"))
					case "panic":
						panic("boom")
					case "cancel":
						cancel()
						if c.more {
							scope, _ := scoped.FromContext(ctx)
							testkit.WaitFor(t, doneChan(scope), "the net to roll the new transaction back")
						}
						fallthrough
					default:
						w.Header().Set("Content-Length", "2")
						w.Write([]byte("ok"))
					}
				}))
				ctx, c2 := context.WithCancel(context.Background())
				cancel = c2
				defer c2()
				rec := httptest.NewRecorder()
				func() {
					defer func() {
						if p := recover(); p != nil && c.end != "panic" {
							t.Errorf("panic %v", p)
						}
					}()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil).WithContext(ctx))
				}()
				if c.end != "panic" && (rec.Code != c.status || !strings.Contains(rec.Body.String(), c.body)) {
					t.Errorf("client got %d %q, want %d %q", rec.Code, rec.Body, c.status, c.body)
				}
				if ids := dbtest.IDs(t, db, table); !slices.Equal(ids, c.rows) {
					t.Errorf("rows %v, want %v", ids, c.rows)
				}
				for range c.hooks {
					testkit.WaitFor(t, hooksDone, "the hooks")
				}
				if got := hooks.List(); !slices.Equal(got, c.hooks) {
					t.Errorf("hooks %q, want %q", got, c.hooks)
				}
				if warned.Load() != c.warned {
					t.Errorf("uncommitted hook called %v, want %v", warned.Load(), c.warned)
				}
			})
		}
	})
}
