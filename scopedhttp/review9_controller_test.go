package scopedhttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

// Review 9: http.ResponseController through the wrapper, on real
// servers, and request bodies read after the handler's first write.

// The controller's calls give what they give without the middleware, in
// every mode, over HTTP/1.1 and HTTP/2 (where EnableFullDuplex is not
// supported, and must not be claimed).
func TestReview9ResponseControllerAnswersAsWithoutTheMiddleware(t *testing.T) {
	fx := newFixture()
	calls := func(w http.ResponseWriter) []string {
		rc := http.NewResponseController(w)
		later := time.Now().Add(bound)
		var out []string
		for _, f := range []func() error{
			func() error { return rc.SetWriteDeadline(later) },
			func() error { return rc.SetReadDeadline(later) },
			rc.EnableFullDuplex,
			rc.Flush,
			func() error { return rc.SetWriteDeadline(time.Time{}) },
		} {
			err := f()
			switch {
			case err == nil:
				out = append(out, "ok")
			case errors.Is(err, http.ErrNotSupported):
				out = append(out, "not supported")
			default:
				out = append(out, err.Error())
			}
		}
		return out
	}
	for _, srv := range servers {
		for _, mode := range []scopedhttp.CommitMode{scopedhttp.Manual, scopedhttp.Autocommit} {
			t.Run(fmt.Sprintf("%s %v", srv.name, mode), func(t *testing.T) {
				var mu sync.Mutex
				got := map[string][]string{}
				record := func(name string, next http.Handler) http.Handler {
					return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						mu.Lock()
						got[name] = calls(w)
						mu.Unlock()
						next.ServeHTTP(w, r)
					})
				}
				inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/wrapped" {
						session(t, r)
					}
					_, _ = io.WriteString(w, "ok")
				})
				mux := http.NewServeMux()
				mux.Handle("/bare", record("bare", inner))
				mux.Handle("/wrapped", fx.middleware(scopedhttp.WithCommitMode(mode))(
					http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { record("wrapped", inner).ServeHTTP(w, r) })))
				ts := srv.start(t, mux)
				for _, p := range []string{"/wrapped", "/bare"} {
					if res := do(dbtest.Ctx(t), ts, http.MethodPost, p); res.err != nil || res.status != http.StatusOK || res.body != "ok" {
						t.Errorf("%s: client got %d %q, %v", p, res.status, res.body, res.err)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if !slices.Equal(got["bare"], got["wrapped"]) {
					t.Errorf("through the wrapper %q, without it %q", got["wrapped"], got["bare"])
				}
			})
		}
	}
}

// A write deadline that has passed (set through the wrapper) makes the
// streamed writes fail: the response cannot be completed, so it is not
// committed; the client never reads it complete, and only OnRollback runs.
func TestReview9PassedWriteDeadlineWhileStreamingRollsBack(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			table := dbtest.CreateIDTable(t, db, "r9_deadline")
			hooks := make(chan string, 2)
			writeErr := make(chan error, 1)
			h, returned := returnedSignal(scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
				scopedhttp.Bind(r7Tx(db)), scopedhttp.WithBufferLimit(4<<10))(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					r7Insert(r, s, table, 1)
					_ = scoped.OnCommit(r.Context(), func(context.Context) { hooks <- "commit" })
					_ = scoped.OnRollback(r.Context(), func(context.Context) { hooks <- "rollback" })
					if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
						t.Errorf("SetWriteDeadline: %v", err)
					}
					var err error
					for i := 0; i < 256 && err == nil; i++ {
						_, err = io.WriteString(w, strings.Repeat("d", 1023)+"\n")
					}
					writeErr <- err
				})))
			ts := srv.start(t, h)
			res := do(dbtest.Ctx(t), ts, http.MethodGet, "/")
			testkit.WaitFor(t, returned, "the handler to return")
			if err := testkit.WaitFor(t, writeErr, "the handler's writes"); err == nil {
				t.Fatal("every write succeeded past the write deadline")
			}
			if res.err == nil {
				t.Errorf("client read a complete %d of %d bytes", res.status, len(res.body))
			}
			if kind, ids := r9Outcome(t, hooks), dbtest.IDs(t, db, table); kind != "rollback" || len(ids) != 0 {
				t.Errorf("hook %q, rows %v; want the OnRollback hook and no row", kind, ids)
			}
		})
	}
}

// In Autocommit a handler may read the request body after its first
// write: held, nothing has gone out; streaming, with full duplex enabled
// on HTTP/1.1 (HTTP/2 is full duplex). It reads the whole body, its row
// (the body's length) is committed and the client gets the whole answer.
func TestReview9BodyReadAfterTheFirstWrite(t *testing.T) {
	const limit, size = 4 << 10, 100_000
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		for _, srv := range servers {
			for _, streaming := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s streaming=%v", srv.name, streaming), func(t *testing.T) {
					table := dbtest.CreateIDTable(t, db, "r9_body")
					out := "ack\n"
					if streaming {
						out = strings.Repeat("s", 4*limit)
					}
					h, returned := returnedSignal(scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
						scopedhttp.Bind(r7Tx(db)), scopedhttp.WithBufferLimit(limit))(
						http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
							if streaming && r.ProtoMajor == 1 {
								if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
									t.Errorf("EnableFullDuplex: %v", err)
								}
							}
							w.WriteHeader(http.StatusCreated)
							_, _ = io.WriteString(w, out)
							b, err := io.ReadAll(r.Body)
							if err != nil {
								panic(err)
							}
							r7Insert(r, s, table, len(b))
						})))
					ts := srv.start(t, h)
					req, _ := http.NewRequestWithContext(dbtest.Ctx(t), http.MethodPost, ts.URL, strings.NewReader(strings.Repeat("b", size)))
					resp, err := ts.Client().Do(req)
					if err != nil {
						t.Fatal(err)
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					testkit.WaitFor(t, returned, "the handler to return")
					if err != nil || resp.StatusCode != http.StatusCreated || string(b) != out {
						t.Errorf("client got %d, %d bytes, %v; want the complete 201", resp.StatusCode, len(b), err)
					}
					if ids := dbtest.IDs(t, db, table); !slices.Equal(ids, []int64{size}) {
						t.Errorf("rows %v, want [%d]: the handler read all the body", ids, size)
					}
				})
			}
		}
	})
}
