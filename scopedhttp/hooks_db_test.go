package scopedhttp_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
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
)

// The unit's hooks run after the response has left: the client holds
// the complete response (a body past net/http's own buffering, so
// chunked unless the middleware gives its length) while the hook is
// still running, over HTTP/1.1 and HTTP/2. (Over HTTP/2 the client has
// the status, the length and every byte of the body; the stream's end
// is sent when the middleware returns, after the hooks, so a client
// reading past the length waits for them.) A committed request runs its
// OnCommit hook, the row saved by then; a request answered 500 runs its
// OnRollback hook, the row gone. A panicking hook changes no answer.
func TestDBHooksRunAfterTheClientHasTheResponse(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
				db := openDB(t, s)
				table := dbtest.CreateIDTable(t, db, "http_hooks")
				txs := txSessions(db, false)
				body := strings.Repeat("x", 64<<10)
				started := make(chan string, 1)
				finished := make(chan struct{}, 1)
				release := make(chan struct{})
				var mu sync.Mutex
				var ran []string
				h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(
					http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						ctx := r.Context()
						tx, err := scoped.Current[*sql.Tx](ctx)
						if err != nil {
							panic(err)
						}
						id := 1
						if r.URL.Path == "/fail" {
							id = 2
						}
						if _, err := tx.ExecContext(ctx, s.InsertID(table), id); err != nil {
							panic(err)
						}
						block := func(kind string) func(context.Context) {
							return func(context.Context) {
								started <- kind
								<-release
								mu.Lock()
								ran = append(ran, kind)
								mu.Unlock()
								finished <- struct{}{}
							}
						}
						_ = scoped.OnCommit(ctx, func(context.Context) { panic("a hook that panics") })
						_ = scoped.OnCommit(ctx, block("commit"))
						_ = scoped.OnRollback(ctx, block("rollback"))
						if r.URL.Path == "/fail" {
							w.WriteHeader(http.StatusInternalServerError)
						} else {
							w.WriteHeader(http.StatusCreated)
						}
						_, _ = w.Write([]byte(body))
					}))
				ts := srv.start(t, h)
				t.Cleanup(func() { close(release) }) // a failed test's hook returns: before the server closes
				logged := captureLog(t)

				for _, c := range []struct {
					path   string
					status int
					hook   string
					rows   []int64
				}{
					{"/ok", http.StatusCreated, "commit", []int64{1}},
					{"/fail", http.StatusInternalServerError, "rollback", []int64{1}},
				} {
					done := make(chan response, 1)
					go func() { done <- doLength(dbtest.Ctx(t), ts, c.path) }()
					if kind := testkit.WaitFor(t, started, "the hook to start"); kind != c.hook {
						t.Fatalf("%s: hook %s started, want %s", c.path, kind, c.hook)
					}
					res := testkit.WaitFor(t, done, "the complete response while the hook runs")
					if res.err != nil || res.status != c.status || res.body != body {
						t.Fatalf("%s: client got %d, %v, %d bytes; want %d and the whole body", c.path, res.status, res.err, len(res.body), c.status)
					}
					if ids := dbtest.IDs(t, db, table); !slices.Equal(ids, c.rows) {
						t.Errorf("%s: rows while the hook runs %v, want %v", c.path, ids, c.rows)
					}
					release <- struct{}{} // the hook is waiting for it
					testkit.WaitFor(t, finished, "the hook to finish")
				}
				mu.Lock()
				defer mu.Unlock()
				if want := []string{"commit", "rollback"}; !slices.Equal(ran, want) {
					t.Errorf("hooks ran %q, want %q", ran, want)
				}
				if !strings.Contains(logged.String(), "a hook that panics") {
					t.Errorf("the panicking hook was not reported: %q", logged.String())
				}
			})
		})
	}
}

// doLength posts to path and reads the response's body up to its
// Content-Length, not to the end of the stream.
func doLength(ctx context.Context, ts *httptest.Server, path string) response {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+path, nil)
	if err != nil {
		return response{err: err}
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		return response{err: err}
	}
	if resp.ContentLength < 0 {
		_ = resp.Body.Close()
		return response{status: resp.StatusCode, err: errors.New("no Content-Length")}
	}
	// To the end, as clients read: over HTTP/2 the end of the stream
	// comes when the handler has returned.
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return response{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}
