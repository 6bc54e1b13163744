package scopedhttp_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

// Review 9: HTTP/2 (TLS, a real client) with responses that stream, past
// the buffer or flushed by the handler, and unit hooks. The client has
// the whole response (its END_STREAM, sent only once the handler has
// returned) before an OnCommit hook runs; a failed COMMIT resets the
// stream, so the client's read ends in an error, never in a complete
// body, and runs only the OnRollback hook.
func TestReview9HTTP2StreamedHooksAndFailedCommit(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	const limit = 4 << 10
	for _, how := range []string{"past the buffer", "flush", "flush then past the buffer"} {
		for _, fail := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s fail=%v", how, fail), func(t *testing.T) {
				table := dbtest.CreateCommitFailureTable(t, db, "r9_h2")
				id := 1
				if fail {
					id = 1_000_000 // check_violation at COMMIT
				}
				size := 16 * limit
				if how == "flush" {
					size = 100
				}
				body := strings.Repeat("h", size)
				clientHas := make(chan struct{})
				hooks := make(chan string, 2)
				h, returned := returnedSignal(scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
					scopedhttp.Bind(r7Tx(db)), scopedhttp.WithBufferLimit(limit))(
					http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						r7Insert(r, s, table, id)
						_ = scoped.OnCommit(r.Context(), func(context.Context) {
							// Before the client has its END_STREAM, this hook
							// would hold it: the wait below ends only at the bound.
							select {
							case <-clientHas:
								hooks <- "commit"
							case <-time.After(bound):
								hooks <- "commit before the client had the response"
							}
						})
						_ = scoped.OnRollback(r.Context(), func(context.Context) { hooks <- "rollback" })
						w.Header().Set("Content-Type", "text/plain")
						w.WriteHeader(http.StatusOK)
						if strings.HasPrefix(how, "flush") {
							_, _ = io.WriteString(w, body[:10])
							if err := http.NewResponseController(w).Flush(); err != nil {
								t.Errorf("Flush: %v", err)
							}
							_, _ = io.WriteString(w, body[10:])
							return
						}
						_, _ = io.WriteString(w, body)
					})))
				ts := servers[1].start(t, h)
				req, _ := http.NewRequestWithContext(dbtest.Ctx(t), http.MethodPost, ts.URL, nil)
				resp, err := ts.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				if resp.ProtoMajor != 2 {
					t.Fatalf("the client spoke %s, want HTTP/2", resp.Proto)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				close(clientHas)
				testkit.WaitFor(t, returned, "the handler to return")
				kind := r9Outcome(t, hooks)
				ids := dbtest.IDs(t, db, table)
				if fail {
					if err == nil {
						t.Errorf("client read a complete %d of %d bytes for a failed COMMIT", resp.StatusCode, len(b))
					}
					if kind != "rollback" || len(ids) != 0 {
						t.Errorf("hook %q, rows %v; want the OnRollback hook and no row", kind, ids)
					}
					return
				}
				if err != nil || resp.StatusCode != http.StatusOK || string(b) != body {
					t.Errorf("client got %d, %d bytes, %v; want the complete 200", resp.StatusCode, len(b), err)
				}
				if kind != "commit" || len(ids) != 1 {
					t.Errorf("hook %q, rows %v; want the OnCommit hook, after the response, and the row", kind, ids)
				}
			})
		}
	}
}
