package scopedhttp_test

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// pinnedForms are the two ways to pin a connection per request: NewConn,
// and scoped.New(scopedsql.Conn(db)) with the core's default teardown.
var pinnedForms = []struct {
	name string
	new  func(db *sql.DB, opts ...scoped.Option) *scoped.ScopedSession[*sql.Conn]
}{
	{"NewConn", scopedsql.NewConn},
	{"New(Conn)", func(db *sql.DB, opts ...scoped.Option) *scoped.ScopedSession[*sql.Conn] {
		return scoped.New(scopedsql.Conn(db), opts...)
	}},
}

// Issue 20 item 8: in Manual mode a pinned connection has nothing to
// commit (its statements were saved as they ran), so a request that used
// only one is not reported uncommitted, nor is one that committed its
// transaction by hand and kept its connection. A transaction left open
// beside it still is.
func TestManualPinnedConnIsNotReportedUncommitted(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		table := dbtest.CreateIDTable(t, db, "http_pinned_hook")
		for _, form := range pinnedForms {
			for _, tc := range []struct {
				name     string
				tx       string // "": none; "commit": committed by hand; "forget": left open
				wantHook bool
			}{
				{"ConnOnly", "", false},
				{"TxCommittedByHand", "commit", false},
				{"TxForgotten", "forget", true},
			} {
				t.Run(form.name+"/"+tc.name, func(t *testing.T) {
					conns := form.new(db, scoped.WithTeardownErrorHook(nil))
					txs := txSessions(db, false)
					var hooked []int
					var id int64
					h := scopedhttp.Middleware(scopedhttp.Bind(conns), scopedhttp.Bind(txs),
						scopedhttp.WithUncommittedHook(func(_ *http.Request, status int) { hooked = append(hooked, status) }))(
						http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
							c, err := conns.Current(r.Context())
							if err != nil {
								t.Error(err)
								return
							}
							id++
							if _, err := c.ExecContext(r.Context(), s.InsertID(table), id); err != nil {
								t.Error(err)
								return
							}
							if tc.tx != "" {
								tx, err := txs.Current(r.Context())
								if err != nil {
									t.Error(err)
									return
								}
								if _, err := tx.ExecContext(r.Context(), "SELECT 1"); err != nil {
									t.Error(err)
								}
								if tc.tx == "commit" {
									if err := txs.Commit(r.Context()); err != nil {
										t.Error(err)
									}
								}
							}
							w.WriteHeader(http.StatusCreated)
						}))
					ts := serve(t, h)
					res := do(dbtest.Ctx(t), ts, http.MethodPost, "/items")
					if res.err != nil || res.status != http.StatusCreated {
						t.Fatalf("client got %d, %v; want 201", res.status, res.err)
					}
					if tc.wantHook != (len(hooked) == 1) || len(hooked) > 1 {
						t.Errorf("uncommitted hook calls %v, want a call: %v", hooked, tc.wantHook)
					}
					if got := dbtest.IDs(t, db, table); !slices.Contains(got, id) {
						t.Errorf("ids %v: the connection's insert %d is missing", got, id)
					}
					if _, err := db.ExecContext(dbtest.Ctx(t), "DELETE FROM "+table); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
	})
}

// Issue 20 item 9: a handler that forgets rows.Close() on its pinned
// connection gets its response: the request's context is cancelled only
// after the handler returns, so a teardown that waited for the Rows (as
// (*sql.Conn).Close does) never returned. Whichever form made the
// connection, the teardown discards it and reports ErrConnInUse, and the
// connection is released once the Rows dies with the request's context.
func TestForgottenRowsCloseOnPinnedConnStillAnswers(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		for _, form := range pinnedForms {
			for _, mode := range []scopedhttp.CommitMode{scopedhttp.Manual, scopedhttp.Autocommit} {
				t.Run(form.name+"/"+mode.String(), func(t *testing.T) {
					var hook testkit.Errors
					conns := form.new(db, scoped.WithTeardownErrorHook(hook.Hook))
					left := make(chan *sql.Rows, 1)
					t.Cleanup(func() { // before the server closes: a failing run must not hang it
						select {
						case rows := <-left:
							_ = rows.Close()
						default:
						}
					})
					h := scopedhttp.Middleware(scopedhttp.Bind(conns), scopedhttp.WithCommitMode(mode),
						scopedhttp.WithUncommittedHook(nil))(
						http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
							c, err := conns.Current(r.Context())
							if err != nil {
								t.Error(err)
								return
							}
							rows, err := c.QueryContext(r.Context(), "SELECT 1 UNION ALL SELECT 2")
							if err != nil {
								t.Error(err)
								return
							}
							left <- rows // and no rows.Close()
							_, _ = w.Write([]byte("ok"))
						}))
					ts := serve(t, h)
					res := do(dbtest.Ctx(t), ts, http.MethodGet, "/items")
					if res.err != nil || res.status != http.StatusOK || res.body != "ok" {
						t.Fatalf("client got %d %q, %v; want 200 ok", res.status, res.body, res.err)
					}
					if errs := hook.List(); len(errs) != 1 || !errors.Is(errs[0], scopedsql.ErrConnInUse) {
						t.Errorf("teardown errors %v, want one wrapping scopedsql.ErrConnInUse", errs)
					}
					testkit.Eventually(t, "the discarded connection to be released", func() bool {
						return db.Stats().InUse == 0
					})
				})
			}
		}
	})
}

// A client that goes away while its handler's statement still holds the
// pinned connection is not an error: the safety net of scoped.New(Conn)
// (or the scope's end, for NewConn) finds the connection in use because
// the cancellation has not yet stopped what holds it, discards it without
// waiting and reports nothing; nothing stays in use. "held" keeps the
// Rows open until the scope has ended, as a query that the cancellation
// has not yet stopped does; "request" opens them with the request's
// context, which database/sql closes on its own as the net looks.
func TestClientGoneWhilePinnedConnIsBusyIsQuiet(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		for _, form := range pinnedForms {
			for _, hold := range []string{"held", "request"} {
				t.Run(form.name+"/"+hold, func(t *testing.T) {
					var hook testkit.Errors
					conns := form.new(db, scoped.WithTeardownErrorHook(hook.Hook))
					started := make(chan struct{})
					h, returned := returnedSignal(scopedhttp.Middleware(scopedhttp.Bind(conns))(
						http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
							c, err := conns.Current(r.Context())
							if err != nil {
								t.Error(err)
								return
							}
							qctx := r.Context()
							if hold == "held" {
								qctx = context.WithoutCancel(qctx)
							}
							rows, err := c.QueryContext(qctx, "SELECT 1 UNION ALL SELECT 2")
							if err != nil {
								t.Error(err)
								return
							}
							defer rows.Close()
							close(started)
							<-r.Context().Done()
							if scope, _ := scoped.FromContext(r.Context()); form.name != "NewConn" {
								testkit.WaitFor(t, doneChan(scope), "the safety net to end the scope")
							}
						})))
					ts := serve(t, h)
					ctx, cancel := context.WithCancel(dbtest.Ctx(t))
					go func() { <-started; cancel() }()
					if res := do(ctx, ts, http.MethodGet, "/"); !errors.Is(res.err, context.Canceled) {
						t.Fatalf("client got %d, %v; want its own cancellation", res.status, res.err)
					}
					testkit.WaitFor(t, returned, "the handler to return")
					if errs := hook.List(); len(errs) != 0 {
						t.Errorf("teardown errors %v, want none", errs)
					}
					testkit.Eventually(t, "the pinned connection's release", func() bool { return db.Stats().InUse == 0 })
				})
			}
		}
	})
}

// In Autocommit, a request whose deadline passed before the commit point
// is answered "not saved" only if it holds something to commit: a
// handler that used only a NewConn connection saved its statements as
// they ran, and gets its own answer.
func TestAutocommitPinnedConnPastItsDeadlineKeepsItsAnswer(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		table := dbtest.CreateIDTable(t, db, "http_pinned_deadline")
		conns := scopedsql.NewConn(db)
		h := scopedhttp.Middleware(scopedhttp.Bind(conns), scopedhttp.WithCommitMode(scopedhttp.Autocommit),
			// Long enough to take the connection: the factory gets the
			// request's context, deadline included.
			scopedhttp.WithTimeout(500*time.Millisecond))(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := conns.Current(r.Context())
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := c.ExecContext(context.WithoutCancel(r.Context()), s.InsertID(table), 1); err != nil {
					t.Error(err)
					return
				}
				<-r.Context().Done()
				w.WriteHeader(http.StatusCreated)
			}))
		ts := serve(t, h)
		res := do(dbtest.Ctx(t), ts, http.MethodPost, "/items")
		if res.err != nil || res.status != http.StatusCreated {
			t.Fatalf("client got %d %q, %v; want the handler's 201 (its insert was saved)", res.status, res.body, res.err)
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1}) {
			t.Errorf("ids %v, want [1]", got)
		}
	})
}
