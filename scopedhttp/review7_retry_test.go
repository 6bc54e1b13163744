package scopedhttp_test

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// Review 7: WithRetry on PostgreSQL with a real serialization failure at
// COMMIT (a deferred trigger raising 40001 for a negative id), with
// request bodies sent after "100 Continue", read partly, not at all, or
// past WithRetryBodyLimit.
func TestReview7RetryReplaysTheBodyAsTheHandlerReadIt(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	const bodyLimit = 1 << 10
	for _, c := range []struct {
		name      string
		size      int
		expect    bool
		read      func(run int) int // how many bytes run reads; -1: all
		wantRuns  int
		wantSaved bool
	}{
		{"100-continue, all read", 100, true, func(int) int { return -1 }, 2, true},
		{"first run reads nothing", 100, false, func(run int) int { return map[bool]int{true: 0, false: -1}[run == 1] }, 2, true},
		{"first run reads part", 100, true, func(run int) int { return map[bool]int{true: 10, false: -1}[run == 1] }, 2, true},
		{"exactly the limit", bodyLimit, true, func(int) int { return -1 }, 2, true},
		{"past the limit", bodyLimit + 1, true, func(int) int { return -1 }, 1, false},
		{"past the limit, first run reads within it", 2 * bodyLimit, false, func(run int) int { return map[bool]int{true: bodyLimit, false: -1}[run == 1] }, 2, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			table := dbtest.CreateCommitFailureTable(t, db, "r7_retry")
			body := strings.Repeat("b", c.size-6) + "-00042"
			var runs atomic.Int32
			var got atomic.Value
			h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(r7Tx(db)),
				scopedhttp.WithRetry(3, scopedsql.Retryable), scopedhttp.WithRetryBodyLimit(bodyLimit))(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					run := int(runs.Add(1))
					var b []byte
					var err error
					if n := c.read(run); n < 0 {
						b, err = io.ReadAll(r.Body)
					} else {
						b = make([]byte, n)
						_, err = io.ReadFull(r.Body, b)
					}
					if err != nil {
						http.Error(w, err.Error(), http.StatusBadRequest)
						return
					}
					got.Store(string(b))
					id := 42
					if run == 1 {
						id = -42 // 40001 at COMMIT
					}
					r7Insert(r, s, table, id)
					w.Header().Set("X-Run", strconv.Itoa(run))
					_, _ = io.WriteString(w, "ok")
				}))
			ts := serve(t, h)
			tr := ts.Client().Transport.(*http.Transport)
			tr.ExpectContinueTimeout = time.Minute // the body goes only after the 100
			req, _ := http.NewRequestWithContext(dbtest.Ctx(t), http.MethodPost, ts.URL, strings.NewReader(body))
			if c.expect {
				req.Header.Set("Expect", "100-continue")
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			rb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if int(runs.Load()) != c.wantRuns {
				t.Errorf("%d runs, want %d", runs.Load(), c.wantRuns)
			}
			ids := dbtest.IDs(t, db, table)
			if c.wantSaved {
				if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Run") != fmt.Sprint(c.wantRuns) || len(ids) != 1 {
					t.Errorf("client got %d %v %q, rows %v; want the last run's 200 and one row", resp.StatusCode, resp.Header, rb, ids)
				}
				if g, _ := got.Load().(string); g != body {
					t.Errorf("the last run read %d bytes (%.20q...), want the whole body of %d", len(g), g, len(body))
				}
				return
			}
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || len(ids) != 0 {
				t.Errorf("client got %d %v %q, rows %v; want 503 with Retry-After and nothing saved", resp.StatusCode, resp.Header, rb, ids)
			}
		})
	}
}
