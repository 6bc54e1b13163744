package scopedhttp_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// Review 7: streamed responses whose end a client reads from something
// other than the last chunk, on PostgreSQL with a real COMMIT failure (a
// deferred constraint trigger, dbtest.CreateCommitFailureTable).

// r7Insert inserts id in the request's transaction, or panics.
func r7Insert(r *http.Request, s dbtest.Server, table string, id int) {
	tx, err := scoped.Current[*sql.Tx](r.Context())
	if err != nil {
		panic(err)
	}
	if _, err := tx.ExecContext(r.Context(), s.InsertID(table), id); err != nil {
		panic(err)
	}
}

// r7Raw sends raw, a whole request, to ts over a fresh TCP connection
// and reads the response the way net/http's client does: err is the
// error of reading the body to its end (nil: the client holds a complete
// response).
func r7Raw(t *testing.T, addr, raw, method string) (status int, header http.Header, body string, err error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, "http://"+addr+"/", nil)
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b), err
}

// A response past the buffer whose COMMIT fails must reach the client
// broken (spec §3), also when the end of its body is the end of the
// connection: an HTTP/1.0 request (nginx's default for proxy_pass) or a
// handler that asks for Transfer-Encoding: identity (server-sent events,
// as net/http recommends). With a Content-Length the handler set, a
// short body is a broken one; without one, a closed connection is a
// normal end.
func TestReview7StreamedFailedCommitIsBrokenWhateverEndsTheBody(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	for _, c := range []struct {
		name, proto string
		length      bool // the handler sets Content-Length
		identity    bool // the handler sets Transfer-Encoding: identity
	}{
		{"HTTP/1.0 with Content-Length", "HTTP/1.0", true, false},
		{"HTTP/1.0 without Content-Length", "HTTP/1.0", false, false},
		{"HTTP/1.1 identity", "HTTP/1.1", false, true},
		{"HTTP/1.1 with Content-Length", "HTTP/1.1", true, false},
	} {
		for _, fail := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s fail=%v", c.name, fail), func(t *testing.T) {
				table := dbtest.CreateCommitFailureTable(t, db, "r7_stream")
				const limit, size = 4 << 10, 64 << 10
				id := 1
				if fail {
					id = 1_000_000 // check_violation at COMMIT
				}
				h, returned := returnedSignal(scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
					scopedhttp.Bind(r7Tx(db)), scopedhttp.WithBufferLimit(limit))(
					http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						r7Insert(r, s, table, id)
						if c.length {
							w.Header().Set("Content-Length", strconv.Itoa(size))
						}
						if c.identity {
							w.Header().Set("Transfer-Encoding", "identity")
						}
						for i := 0; i < size/1024; i++ {
							_, _ = w.Write([]byte(strings.Repeat("x", 1023) + "\n"))
						}
					})))
				ts := serve(t, h)
				status, _, body, err := r7Raw(t, ts.Listener.Addr().String(),
					"GET /export "+c.proto+"\r\nHost: x\r\nConnection: close\r\n\r\n", http.MethodGet)
				testkit.WaitFor(t, returned, "the handler to return")
				ids := dbtest.IDs(t, db, table)
				if fail {
					if err == nil {
						t.Errorf("client read a complete %d of %d bytes for a failed commit; want a broken response", status, len(body))
					}
					if len(ids) != 0 {
						t.Errorf("rows after the failed commit: %v", ids)
					}
					return
				}
				if err != nil || status != http.StatusOK || len(body) != size {
					t.Errorf("client got %d, %d bytes, %v; want a complete 200 of %d", status, len(body), err, size)
				}
				if len(ids) != 1 {
					t.Errorf("rows after the commit: %v", ids)
				}
			})
		}
	}
}

// A 204 (or 304) never has a body, and net/http refuses a handler's
// bytes for one (ErrBodyNotAllowed) without harm: a handler that writes
// one anyway, past the buffer, is still answered 204 and committed, as
// it is within the buffer.
func TestReview7NoBodyStatusWithALargeBodyIsCommitted(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	for _, size := range []int{100, 64 << 10} {
		for _, status := range []int{http.StatusNoContent, http.StatusNotModified} {
			t.Run(fmt.Sprintf("%d %dB", status, size), func(t *testing.T) {
				table := dbtest.CreateIDTable(t, db, "r7_nobody")
				h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.AutocommitIncludeRedirect),
					scopedhttp.Bind(r7Tx(db)), scopedhttp.WithBufferLimit(4<<10))(
					http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						r7Insert(r, s, table, 1)
						w.WriteHeader(status)
						_, _ = w.Write([]byte(strings.Repeat("x", size)))
					}))
				ts := serve(t, h)
				res := do(dbtest.Ctx(t), ts, http.MethodPost, "/")
				if res.err != nil || res.status != status {
					t.Errorf("client got %d, %v; want %d", res.status, res.err, status)
				}
				if ids := dbtest.IDs(t, db, table); len(ids) != 1 {
					t.Errorf("rows after the %d: %v, want [1]", status, ids)
				}
			})
		}
	}
}

// A handler that declares a trailer (the Trailer header, or a key with
// http.TrailerPrefix) and registers an OnCommit hook still sends its
// trailer: the Content-Length set so that the hooks need not wait for
// the last chunk must not turn the chunked body, which carries the
// trailer, into a plain one. The trailer's value, set after the body,
// is not a header too (net/http takes the header when it is written;
// the held one is written after the handler returned).
func TestReview7TrailersSurviveOnCommitHooks(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	for _, c := range []struct {
		srv    int
		prefix bool
	}{{0, false}, {0, true}, {1, false}, {1, true}} {
		prefix, srv := c.prefix, servers[c.srv]
		t.Run(fmt.Sprintf("%s prefix=%v", srv.name, prefix), func(t *testing.T) {
			table := dbtest.CreateIDTable(t, db, "r7_trailer")
			ran := make(chan struct{})
			h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
				scopedhttp.Bind(r7Tx(db)))(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					r7Insert(r, s, table, 1)
					if err := scoped.OnCommit(r.Context(), func(context.Context) { close(ran) }); err != nil {
						panic(err)
					}
					if !prefix {
						w.Header().Set("Trailer", "X-Sum")
					}
					_, _ = io.WriteString(w, "body")
					if prefix {
						w.Header().Set(http.TrailerPrefix+"X-Sum", "42")
					} else {
						w.Header().Set("X-Sum", "42")
					}
				}))
			ts := srv.start(t, h)
			req, _ := http.NewRequestWithContext(dbtest.Ctx(t), http.MethodPost, ts.URL, nil)
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			testkit.WaitFor(t, ran, "the OnCommit hook")
			if err != nil || string(b) != "body" {
				t.Fatalf("body %q, %v", b, err)
			}
			if got := resp.Header.Get("X-Sum"); got != "" {
				t.Errorf("the trailer's value set after the body went out as a header too: %q", got)
			}
			if got := resp.Trailer.Get("X-Sum"); got != "42" {
				t.Errorf("trailer X-Sum = %q, want 42 (header %v, trailer %v)", got, resp.Header, resp.Trailer)
			}
		})
	}
}

// A response without a body (HEAD, 204, 304) is complete once its status
// line and headers are out: a handler that writes a body past the buffer
// anyway (a GET handler that also serves HEAD) must not start streaming,
// or a failed COMMIT is answered with the status the handler asked for.
func TestReview7NoBodyResponsePastTheBufferWhoseCommitFailsIsNotASuccess(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	for _, c := range []struct {
		method string
		status int
	}{{http.MethodHead, http.StatusOK}, {http.MethodGet, http.StatusNoContent}, {http.MethodGet, http.StatusNotModified}} {
		for _, how := range []string{"write", "readFrom", "flush"} {
			readFrom := how == "readFrom"
			t.Run(fmt.Sprintf("%s %d %s", c.method, c.status, how), func(t *testing.T) {
				table := dbtest.CreateCommitFailureTable(t, db, "r7_head")
				h, returned := returnedSignal(scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.AutocommitIncludeRedirect),
					scopedhttp.Bind(r7Tx(db)), scopedhttp.WithBufferLimit(4<<10))(
					http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						r7Insert(r, s, table, 1_000_000) // check_violation at COMMIT
						w.WriteHeader(c.status)
						body := strings.Repeat("x", 64<<10)
						if how == "flush" { // a small body, then a flush: nothing to stream but the status
							_, _ = io.WriteString(w, "x")
							w.(http.Flusher).Flush()
							return
						}
						if readFrom {
							_, _ = w.(io.ReaderFrom).ReadFrom(io.LimitReader(strings.NewReader(body), int64(len(body))))
							return
						}
						_, _ = io.WriteString(w, body)
					})))
				ts := serve(t, h)
				status, _, _, err := r7Raw(t, ts.Listener.Addr().String(),
					c.method+" / HTTP/1.1\r\nHost: x\r\n\r\n", c.method)
				testkit.WaitFor(t, returned, "the handler to return")
				if err == nil && status == c.status {
					t.Errorf("client got a complete %d for a failed commit", status)
				}
				if ids := dbtest.IDs(t, db, table); len(ids) != 0 {
					t.Errorf("rows after the failed commit: %v", ids)
				}
			})
		}
	}
}

// r7Tx is scopedsql.NewTx on db, quiet about the teardown errors the
// tests cause on purpose.
func r7Tx(db *sql.DB) *scoped.ScopedSession[*sql.Tx] {
	return scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
}
