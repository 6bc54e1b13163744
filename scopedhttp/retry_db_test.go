package scopedhttp_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// counter is one row (id 1, n 0) in a fresh table, dropped at the end.
func counter(t *testing.T, db *sql.DB, prefix string) string {
	t.Helper()
	table := dbtest.Table(prefix)
	ctx := dbtest.Ctx(t)
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id INT PRIMARY KEY, n BIGINT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dbtest.Bound)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP TABLE "+table); err != nil {
			t.Errorf("drop %s: %v", table, err)
		}
	})
	if _, err := db.ExecContext(ctx, "INSERT INTO "+table+" (id, n) VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	return table
}

// barrier holds the first n arrivals until all n have arrived, so that
// the first runs of n concurrent requests all read before any writes:
// every one but one must then fail on the conflict, and be retried.
type barrier struct {
	n       int32
	arrived atomic.Int32
	all     chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: int32(n), all: make(chan struct{})} }

func (b *barrier) wait(ctx context.Context) error {
	switch k := b.arrived.Add(1); {
	case k > b.n:
		return nil
	case k == b.n:
		close(b.all)
	}
	select {
	case <-b.all:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(bound): // a request that never arrived (no connection?) fails the test, not hangs it
		return errors.New("barrier: not every request arrived")
	}
}

// warm opens n connections of db before the test, so that a server short
// of connections fails it here rather than leaving requests at a barrier.
func warm(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	db.SetMaxOpenConns(n + 2)
	db.SetMaxIdleConns(n + 2)
	conns := make([]*sql.Conn, n)
	for i := range conns {
		c, err := db.Conn(dbtest.Ctx(t))
		if err != nil {
			t.Fatalf("opening connection %d of %d: %v", i+1, n, err)
		}
		conns[i] = c
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

// concurrentIncrements sends n concurrent POSTs to url, request i's body
// being i+1, and returns their responses.
func concurrentIncrements(t *testing.T, client *http.Client, url string, n int) []response {
	t.Helper()
	got := make([]response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = post(t, clientOf{client}, url, strconv.Itoa(i+1))
		}()
	}
	wg.Wait()
	return got
}

type clientOf struct{ c *http.Client }

func (c clientOf) Client() *http.Client { return c.c }

// The trial: a service function in its own unit of work with
// retries, at SERIALIZABLE (PostgreSQL: serialization failures) or with
// shared locks (MariaDB: deadlocks), called from a handler that answers
// its error with 500. Under the middleware's WithRetry, n concurrent
// increments of one counter all answer 201 and the counter is exact.
func TestDBConcurrentIncrementsWithRetryAllSucceed(t *testing.T) {
	for _, c := range []struct {
		name   string
		server func(testing.TB) dbtest.Server
		n      int
		opts   *sql.TxOptions
		lock   string
	}{
		{"postgres serializable", dbtest.Postgres, 32, &sql.TxOptions{Isolation: sql.LevelSerializable}, ""},
		{"mariadb deadlocks", dbtest.MySQL, 16, nil, " LOCK IN SHARE MODE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := c.server(t)
			db := openDB(t, s)
			warm(t, db, c.n)
			table := counter(t, db, "http_retry")
			txs := scoped.New(scopedsql.Tx(db, c.opts), scoped.WithTeardownErrorHook(nil))
			b := newBarrier(c.n)
			var runs atomic.Int32
			increment := func(ctx context.Context, by int) error {
				return scoped.Run(ctx, func(ctx context.Context) error {
					tx, err := txs.Current(ctx)
					if err != nil {
						return err
					}
					var n int64
					if err := tx.QueryRowContext(ctx, "SELECT n FROM "+table+" WHERE id = 1"+c.lock).Scan(&n); err != nil {
						return err
					}
					if err := b.wait(ctx); err != nil {
						return err
					}
					_, err = tx.ExecContext(ctx, "UPDATE "+table+" SET n = "+placeholder(s, 1)+" WHERE id = 1", n+int64(by))
					return err
				}, scoped.WithRetry(3, scopedsql.Retryable))
			}
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				runs.Add(1)
				body, err := io.ReadAll(r.Body)
				if err != nil {
					t.Errorf("read body: %v", err)
				}
				by, _ := strconv.Atoi(string(body))
				if err := increment(r.Context(), by); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError) // what the handler did
					return
				}
				w.WriteHeader(http.StatusCreated)
			})
			// One winner per round at least: c.n attempts always suffice.
			ts := serve(t, scopedhttp.Middleware(scopedhttp.Bind(txs), scopedhttp.WithCommitMode(scopedhttp.Autocommit),
				scopedhttp.WithRetry(c.n, scopedsql.Retryable))(h))
			got := concurrentIncrements(t, ts.Client(), ts.URL, c.n)
			for i, g := range got {
				if g.err != nil || g.status != http.StatusCreated {
					t.Errorf("request %d: %d %q (%v), want 201", i, g.status, g.body, g.err)
				}
			}
			var n int64
			if err := db.QueryRowContext(dbtest.Ctx(t), "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if want := int64(c.n * (c.n + 1) / 2); n != want {
				t.Errorf("counter = %d, want %d", n, want)
			}
			// The barrier made every first run but one conflict.
			if r := int(runs.Load()); r < 2*c.n-1 {
				t.Errorf("%d runs for %d requests: want at least %d, the conflicts retried", r, c.n, 2*c.n-1)
			}
			t.Logf("%d requests, %d runs", c.n, runs.Load())
		})
	}
}

// Without WithRetry the same trial loses requests: the measure the test
// above is compared with, and what the issue saw.
func TestDBConcurrentIncrementsWithoutRetryFail(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	const n = 16
	warm(t, db, n)
	table := counter(t, db, "http_noretry")
	txs := scoped.New(scopedsql.Tx(db, &sql.TxOptions{Isolation: sql.LevelSerializable}), scoped.WithTeardownErrorHook(nil))
	b := newBarrier(n)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		tx, err := txs.Current(ctx)
		if err == nil {
			var v int64
			err = tx.QueryRowContext(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&v)
			if err == nil {
				err = b.wait(ctx)
			}
			if err == nil {
				_, err = tx.ExecContext(ctx, "UPDATE "+table+" SET n = $1 WHERE id = 1", v+1)
			}
		}
		if scopedsql.Retryable(err) {
			http.Error(w, "conflict", http.StatusConflict)
			return
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("handler: %v", err)
		}
		w.WriteHeader(http.StatusCreated)
	})
	ts := serve(t, scopedhttp.Middleware(scopedhttp.Bind(txs), scopedhttp.WithCommitMode(scopedhttp.Autocommit))(h))
	ok := 0
	for _, g := range concurrentIncrements(t, ts.Client(), ts.URL, n) {
		if g.status == http.StatusCreated {
			ok++
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d succeeded without retries; want 1 (the barrier makes the rest conflict)", ok, n)
	}
}
