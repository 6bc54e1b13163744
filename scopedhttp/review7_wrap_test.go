package scopedhttp_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

// Review 7: http.TimeoutHandler inside the middleware, on PostgreSQL.
// Its 503 is the status the middleware decides by: the insert made
// before the deadline is rolled back, and the handler's goroutine, which
// TimeoutHandler leaves running, cannot write anything after it: a
// session it asks for then is refused, never a fresh transaction that
// no one commits.
func TestReview7TimeoutHandlerInsideRollsBackAndRefusesLateWork(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	table := dbtest.CreateIDTable(t, db, "r7_timeout")
	late := make(chan error, 1)
	var returned <-chan struct{}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r7Insert(r, s, table, 1)
		<-r.Context().Done() // TimeoutHandler's deadline
		<-returned           // the middleware has answered and ended the scope
		tx, err := scoped.Current[*sql.Tx](r.Context())
		if err == nil {
			_, err = tx.ExecContext(context.WithoutCancel(r.Context()), s.InsertID(table), 2)
			if err == nil {
				err = errors.New("the late insert ran")
			}
		}
		late <- err
		w.WriteHeader(http.StatusCreated)
	})
	h, returned := returnedSignal(scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(r7Tx(db)))(
		http.TimeoutHandler(inner, 100*time.Millisecond, "too slow")))
	ts := serve(t, h)
	res := do(dbtest.Ctx(t), ts, http.MethodPost, "/")
	if res.err != nil || res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, "too slow") {
		t.Errorf("client got %d %q, %v; want TimeoutHandler's 503", res.status, res.body, res.err)
	}
	if err := testkit.WaitFor(t, late, "the timed-out handler to finish"); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Errorf("a session asked for after the timeout: %v, want an error", err)
	}
	if ids := dbtest.IDs(t, db, table); len(ids) != 0 {
		t.Errorf("rows after TimeoutHandler's 503: %v", ids)
	}

	// In time, the handler's answer is committed, as TimeoutHandler copies it.
	h2 := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(r7Tx(db)))(
		http.TimeoutHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r7Insert(r, s, table, 3)
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, "made")
		}), bound, "too slow"))
	ts = serve(t, h2)
	if res := do(dbtest.Ctx(t), ts, http.MethodPost, "/"); res.err != nil || res.status != http.StatusCreated || res.body != "made" {
		t.Errorf("client got %d %q, %v; want 201", res.status, res.body, res.err)
	}
	if ids := dbtest.IDs(t, db, table); len(ids) != 1 || ids[0] != 3 {
		t.Errorf("rows after the 201: %v, want [3]", ids)
	}
}

// A body of exactly WithBufferLimit bytes is still held, so its failed
// COMMIT is a clean 500 after the 103 that went out first; one byte more
// streams, and the same failure breaks the response. By Write and by
// ReadFrom (io.Copy from a reader without WriteTo).
func TestReview7BufferLimitEdgeWithEarlyHints(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	const limit = 4 << 10
	for _, size := range []int{limit, limit + 1} {
		for _, readFrom := range []bool{false, true} {
			t.Run(fmt.Sprintf("%dB readFrom=%v", size, readFrom), func(t *testing.T) {
				table := dbtest.CreateCommitFailureTable(t, db, "r7_edge")
				h, returned := returnedSignal(scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
					scopedhttp.Bind(r7Tx(db)), scopedhttp.WithBufferLimit(limit))(
					http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						w.Header().Set("Link", "</a.css>; rel=preload")
						w.WriteHeader(http.StatusEarlyHints)
						r7Insert(r, s, table, 1_000_000) // check_violation at COMMIT
						w.WriteHeader(http.StatusCreated)
						w.WriteHeader(http.StatusAccepted) // superfluous
						body := strings.Repeat("y", size)
						if readFrom {
							_, _ = io.Copy(w, io.LimitReader(strings.NewReader(body), int64(size)))
						} else {
							_, _ = io.WriteString(w, body)
						}
					})))
				ts := serve(t, h)
				var infos []int
				ctx := httptrace.WithClientTrace(dbtest.Ctx(t), &httptrace.ClientTrace{
					Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { infos = append(infos, code); return nil },
				})
				res := do(ctx, ts, http.MethodPost, "/")
				testkit.WaitFor(t, returned, "the handler to return")
				if len(infos) != 1 || infos[0] != http.StatusEarlyHints {
					t.Errorf("informational responses %v, want [103]", infos)
				}
				if size == limit {
					if res.err != nil || res.status != http.StatusInternalServerError || strings.Contains(res.body, "y") {
						t.Errorf("client got %d %.40q, %v; want a clean 500", res.status, res.body, res.err)
					}
				} else if res.err == nil {
					t.Errorf("client read a complete %d of %d bytes for a failed commit", res.status, len(res.body))
				}
				if ids := dbtest.IDs(t, db, table); len(ids) != 0 {
					t.Errorf("rows after the failed commit: %v", ids)
				}
			})
		}
	}
}
