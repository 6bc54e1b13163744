package scopedhttp_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // "mysql" driver for the integration tests
	_ "github.com/lib/pq"              // "postgres" driver for the integration tests

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// openDB opens s's pool for the test and checks, at its end, that no
// connection is left in use.
func openDB(t *testing.T, s dbtest.Server) *sql.DB {
	t.Helper()
	db, err := sql.Open(s.Driver, s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(dbtest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n := db.Stats().InUse; n != 0 {
			t.Errorf("%d connection(s) still in use at the end of the test", n)
		}
		_ = db.Close()
	})
	return db
}

// errInjected is a commit failure injected after the transaction was
// rolled back for real: nothing of it is on the server.
var errInjected = errors.New("injected: commit failed")

// txSessions is scopedsql.Tx on db; with failCommit, its commit rolls the
// transaction back and reports errInjected.
func txSessions(db *sql.DB, failCommit bool) *scoped.ScopedSession[*sql.Tx] {
	opts := []scoped.Option{scoped.WithTeardownErrorHook(nil)}
	if failCommit {
		opts = append(opts, scoped.WithCommit(func(_ context.Context, tx *sql.Tx) error {
			if err := tx.Rollback(); err != nil {
				return err
			}
			return errInjected
		}))
	}
	return scoped.New(scopedsql.Tx(db, nil), opts...)
}

// placeholder returns the n-th bind parameter in s's syntax.
func placeholder(s dbtest.Server, n int) string {
	if s.Name == "postgres" {
		return "$" + strconv.Itoa(n)
	}
	return "?"
}

// servers are the two ways a client reaches the middleware over
// loopback: HTTP/1.1, and HTTP/2 over TLS.
var servers = []struct {
	name  string
	start func(t *testing.T, h http.Handler) *httptest.Server
}{
	{"HTTP1", serve},
	{"HTTP2", func(t *testing.T, h http.Handler) *httptest.Server {
		t.Helper()
		ts := httptest.NewUnstartedServer(h)
		ts.Config.ErrorLog = log.New(io.Discard, "", 0)
		ts.EnableHTTP2 = true
		ts.StartTLS()
		t.Cleanup(ts.Close)
		return ts
	}},
}

// The most common read handler, one line per row while it reads them,
// used to answer 200 with one row: the first Write committed and the
// still open *sql.Rows died. Now every row arrives.
func TestDBStreamingRowsInAutocommitAnswersAllOfThem(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		table := dbtest.CreateIDTable(t, db, "http_rows")
		for i := 1; i <= 500; i++ {
			if _, err := db.ExecContext(dbtest.Ctx(t), s.InsertID(table), i); err != nil {
				t.Fatal(err)
			}
		}
		txs := txSessions(db, false)
		h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tx, err := scoped.Current[*sql.Tx](r.Context())
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				rows, err := tx.QueryContext(r.Context(), "SELECT id FROM "+table+" ORDER BY id")
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				defer rows.Close()
				for rows.Next() {
					var id int64
					if err := rows.Scan(&id); err != nil {
						panic(err)
					}
					fmt.Fprintln(w, id)
				}
				if err := rows.Err(); err != nil {
					panic(err) // a truncated body must not pass as a 200
				}
			}))
		ts := serve(t, h)
		res := do(dbtest.Ctx(t), ts, http.MethodGet, "/ids")
		if res.err != nil || res.status != http.StatusOK {
			t.Fatalf("client got %d, %v: %q", res.status, res.err, res.body)
		}
		if lines := strings.Split(strings.TrimSpace(res.body), "\n"); len(lines) != 500 || lines[0] != "1" || lines[499] != "500" {
			t.Errorf("client got %d rows, want 500 (first %q)", len(lines), lines[0])
		}
	})
}

// A handler that sets its status first and runs its statements
// afterwards is committed with them.
func TestDBStatusFirstThenInsertIsCommitted(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		table := dbtest.CreateIDTable(t, db, "http_late")
		txs := txSessions(db, false)
		h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusCreated)
				_, _ = io.WriteString(w, "created 1 and 2\n")
				for _, id := range []int{1, 2} {
					tx, err := scoped.Current[*sql.Tx](r.Context())
					if err != nil {
						panic(err)
					}
					if _, err := tx.ExecContext(r.Context(), s.InsertID(table), id); err != nil {
						panic(err)
					}
				}
			}))
		ts := serve(t, h)
		res := do(dbtest.Ctx(t), ts, http.MethodPost, "/items")
		if res.err != nil || res.status != http.StatusCreated {
			t.Fatalf("client got %d, %v: %q", res.status, res.err, res.body)
		}
		if ids := dbtest.IDs(t, db, table); len(ids) != 2 {
			t.Errorf("rows after the 201: %v, want [1 2]", ids)
		}
	})
}

// A response larger than the buffer whose commit fails reaches the client
// broken, over HTTP/1.1 and HTTP/2: its read fails, it never holds a
// complete 200. The row is not there.
func TestDBLargeResponseWhoseCommitFailsIsBroken(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
				db := openDB(t, s)
				table := dbtest.CreateIDTable(t, db, "http_abort")
				txs := txSessions(db, true)
				const size = 256 << 10
				returned := make(chan struct{})
				h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs),
					scopedhttp.WithBufferLimit(64<<10))(
					http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						defer close(returned)
						tx, err := scoped.Current[*sql.Tx](r.Context())
						if err != nil {
							panic(err)
						}
						if _, err := tx.ExecContext(r.Context(), s.InsertID(table), 1); err != nil {
							panic(err)
						}
						w.Header().Set("Content-Length", strconv.Itoa(size))
						_, _ = w.Write([]byte(strings.Repeat("x", size)))
					}))
				ts := srv.start(t, h)
				res := do(dbtest.Ctx(t), ts, http.MethodGet, "/export")
				testkit.WaitFor(t, returned, "the handler to return")
				if res.err == nil {
					t.Errorf("client read a complete %d response of %d bytes for a failed commit; want a broken one", res.status, len(res.body))
				}
				if ids := dbtest.IDs(t, db, table); len(ids) != 0 {
					t.Errorf("rows after the failed commit: %v", ids)
				}
			})
		})
	}
}

// A failed commit of a response within the buffer is a clean 500 with
// none of the handler's bytes or headers, over HTTP/1.1 and HTTP/2.
func TestDBSmallResponseWhoseCommitFailsIsAClean500(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
				db := openDB(t, s)
				table := dbtest.CreateIDTable(t, db, "http_clean")
				txs := txSessions(db, true)
				h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(
					http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						tx, err := scoped.Current[*sql.Tx](r.Context())
						if err != nil {
							panic(err)
						}
						if _, err := tx.ExecContext(r.Context(), s.InsertID(table), 1); err != nil {
							panic(err)
						}
						w.Header().Set("Location", "/items/1")
						w.WriteHeader(http.StatusCreated)
						_, _ = io.WriteString(w, "created")
					}))
				ts := srv.start(t, h)
				res := do(dbtest.Ctx(t), ts, http.MethodPost, "/items")
				if res.err != nil || res.status != http.StatusInternalServerError {
					t.Fatalf("client got %d, %v; want a complete 500", res.status, res.err)
				}
				if strings.Contains(res.body, "created") || res.header.Get("Location") != "" {
					t.Errorf("the 500 carries the handler's response: %v %q", res.header, res.body)
				}
				if !strings.Contains(res.body, "not saved") {
					t.Errorf("500 body %q does not say the changes were not saved", res.body)
				}
				if ids := dbtest.IDs(t, db, table); len(ids) != 0 {
					t.Errorf("rows after the failed commit: %v", ids)
				}
			})
		})
	}
}

// A client that reads slowly gets its whole streamed response, and one
// that goes away mid-stream leaves nothing behind: no connection in use
// (openDB), no goroutine (goleak), and its insert rolled back.
func TestDBSlowAndVanishingClientsLeaveNothingOpen(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		table := dbtest.CreateIDTable(t, db, "http_gone")
		txs := txSessions(db, false)
		const chunks, chunk = 64, 16 << 10 // 1 MiB, twice the buffer
		var mu sync.Mutex
		next := 0
		returned := make(chan struct{}, 2)
		h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs),
			scopedhttp.WithBufferLimit(512<<10))(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer func() { returned <- struct{}{} }()
				mu.Lock()
				next++
				id := next
				mu.Unlock()
				tx, err := scoped.Current[*sql.Tx](r.Context())
				if err != nil {
					panic(err)
				}
				if _, err := tx.ExecContext(r.Context(), s.InsertID(table), id); err != nil {
					panic(err)
				}
				n := chunks
				if r.URL.Path == "/gone" {
					n = 1 << 16 // 1 GiB: streams until the client has gone
				}
				for range n {
					if _, err := w.Write([]byte(strings.Repeat("x", chunk))); err != nil {
						return // the client went away
					}
				}
			}))
		ts := serve(t, h)

		// Slow: reads 4 KiB at a time with pauses.
		req, _ := http.NewRequestWithContext(dbtest.Ctx(t), http.MethodGet, ts.URL+"/slow", nil)
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		total, buf := 0, make([]byte, 4<<10)
		for i := 0; ; i++ {
			n, err := resp.Body.Read(buf)
			total += n
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("slow client: %v after %d bytes", err, total)
			}
			if i%32 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		_ = resp.Body.Close()
		testkit.WaitFor(t, returned, "the slow client's handler to return")
		if total != chunks*chunk || resp.StatusCode != http.StatusOK {
			t.Errorf("slow client got %d %d bytes, want 200 and %d", resp.StatusCode, total, chunks*chunk)
		}

		// Gone: reads the status and a little, then leaves.
		ctx, cancel := context.WithCancel(dbtest.Ctx(t))
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/gone", nil)
		resp, err = ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(bufio.NewReader(resp.Body), make([]byte, 1024)); err != nil {
			t.Fatal(err)
		}
		cancel()
		_ = resp.Body.Close()
		testkit.WaitFor(t, returned, "the vanished client's handler to return")
		ts.Close() // waits for the server's goroutines

		if ids := dbtest.IDs(t, db, table); len(ids) != 1 || ids[0] != 1 {
			t.Errorf("rows: %v, want only the slow client's [1]", ids)
		}
	})
}

// A client that goes away while the handler still works: its transaction
// is rolled back at once, so the row it locked is free for others before
// the handler returns (issue 10, item 7).
func TestDBClientGoneReleasesRowLockBeforeHandlerReturns(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		table := dbtest.CreateIDTable(t, db, "http_lock")
		if _, err := db.ExecContext(dbtest.Ctx(t), s.InsertID(table), 1); err != nil {
			t.Fatal(err)
		}
		txs := txSessions(db, false)
		locked := make(chan struct{})
		proceed := make(chan struct{})
		openProceed := release(t, proceed)
		returned := make(chan struct{})
		h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(returned)
				tx, err := scoped.Current[*sql.Tx](r.Context())
				if err != nil {
					panic(err)
				}
				q := "UPDATE " + table + " SET id = 2 WHERE id = " + placeholder(s, 1)
				if _, err := tx.ExecContext(r.Context(), q, 1); err != nil {
					panic(err)
				}
				close(locked)
				<-proceed // slow work that ignores the client
				w.WriteHeader(http.StatusOK)
			}))
		ts := serve(t, h)
		ctx, cancel := context.WithCancel(dbtest.Ctx(t))
		resc := make(chan response, 1)
		go func() { resc <- do(ctx, ts, http.MethodPost, "/lock") }()
		testkit.WaitFor(t, locked, "the handler to lock the row")
		cancel()
		testkit.WaitFor(t, resc, "the client to give up")

		// The same row, from another connection: it waits for the lock
		// until the request's transaction is rolled back.
		q := "UPDATE " + table + " SET id = 3 WHERE id = " + placeholder(s, 1)
		res, err := db.ExecContext(dbtest.Ctx(t), q, 1)
		if err != nil {
			t.Fatalf("update of the row the gone client locked: %v", err)
		}
		select {
		case <-returned:
			t.Errorf("the handler had returned before the lock was released: nothing proves the early rollback")
		default:
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Errorf("the update saw %d rows with id 1: the gone client's update was not rolled back", n)
		}
		openProceed()
		testkit.WaitFor(t, returned, "the handler to return")
		ts.Close()
		if ids := dbtest.IDs(t, db, table); len(ids) != 1 || ids[0] != 3 {
			t.Errorf("rows: %v, want [3]", ids)
		}
	})
}
