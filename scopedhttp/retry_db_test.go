package scopedhttp_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

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
			counter := dbtest.CreateCounter(t, db, "http_retry", c.n)
			counter.Lock, counter.Param = c.lock, placeholder(s, 1)
			txs := scoped.New(scopedsql.Tx(db, c.opts), scoped.WithTeardownErrorHook(nil))
			increment := counter.Service(txs.Current, scopedsql.Retryable)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, err := io.ReadAll(r.Body)
				if err != nil {
					t.Errorf("read body: %v", err)
				}
				by, _ := strconv.Atoi(string(body))
				if err := increment(r.Context(), int64(by)); err != nil {
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
			counter.Check(t, int64(c.n*(c.n+1)/2))
		})
	}
}

// Without WithRetry the same trial loses requests: the measure the test
// above is compared with, and what the issue saw.
func TestDBConcurrentIncrementsWithoutRetryFail(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	const n = 16
	counter := dbtest.CreateCounter(t, db, "http_noretry", n)
	txs := scoped.New(scopedsql.Tx(db, &sql.TxOptions{Isolation: sql.LevelSerializable}), scoped.WithTeardownErrorHook(nil))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		tx, err := txs.Current(ctx)
		if err == nil {
			err = counter.Increment(ctx, tx, 1)
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
