package scopedconnect_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedconnect"
	"github.com/go-scoped/scoped/scopedsql"
)

// barrier holds the first n arrivals until all n have arrived.
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

// 32 concurrent unary calls (half over the Connect protocol, half over
// gRPC) increment one counter at SERIALIZABLE through a service function
// in its own unit of work with retries, whose error the handler turns
// into CodeInternal: under WithRetry all succeed and the counter is exact.
func TestUnaryRetryConcurrentIncrements(t *testing.T) {
	const n = 32
	db, _ := openDB(t)
	warm(t, db, n)
	table := dbtest.Table("connect_retry")
	ctx := dbtest.Ctx(t)
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id INT PRIMARY KEY, n BIGINT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP TABLE "+table) })
	if _, err := db.ExecContext(ctx, "INSERT INTO "+table+" VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	txs := scoped.New(scopedsql.Tx(db, &sql.TxOptions{Isolation: sql.LevelSerializable}), scoped.WithTeardownErrorHook(nil))
	b := newBarrier(n)
	var runs atomic.Int32
	increment := func(ctx context.Context) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			var v int64
			if err := tx.QueryRowContext(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&v); err != nil {
				return err
			}
			if err := b.wait(ctx); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, "UPDATE "+table+" SET n = $1 WHERE id = 1", v+1)
			return err
		}, scoped.WithRetry(3, scopedsql.Retryable))
	}
	url := serve(t, &service{check: func(ctx context.Context, _ string) error {
		runs.Add(1)
		if err := increment(ctx); err != nil {
			return connect.NewError(connect.CodeInternal, err)
		}
		return nil
	}}, connect.WithInterceptors(scopedconnect.NewInterceptor(scopedconnect.WithCommitMode(scopedconnect.Autocommit),
		scopedconnect.Bind(txs), scopedconnect.WithRetry(n, scopedsql.Retryable))))
	cs := clients(t, url)
	codes := make([]int, n)
	msgs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		c := cs[1+i%2] // connect, connect-grpc
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], msgs[i] = c.check(dbtest.Ctx(t), "")
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 0 {
			t.Errorf("call %d: code %d %q, want OK", i, c, msgs[i])
		}
	}
	var v int64
	if err := db.QueryRowContext(dbtest.Ctx(t), "SELECT n FROM "+table+" WHERE id = 1").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != n {
		t.Errorf("counter = %d, want %d", v, n)
	}
	if r := runs.Load(); r < 2*n-1 {
		t.Errorf("%d runs for %d calls, want at least %d", r, n, 2*n-1)
	}
	t.Logf("%d calls, %d runs", n, runs.Load())
}

// A serialization failure at COMMIT runs the call again, whatever the
// protocol; the attempts are bounded, then the client gets Aborted.
// Streaming calls are never run again.
func TestUnaryRetryAtCommitIsBounded(t *testing.T) {
	db, table := openDB(t)
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	var runs atomic.Int32
	url := serve(t, &service{
		check: func(ctx context.Context, arg string) error {
			runs.Add(1)
			return insert(ctx, table, -1) // COMMIT fails with 40001
		},
		watch: func(ctx context.Context, _ string, _ func() error) error {
			runs.Add(1)
			return insert(ctx, table, -1)
		},
	}, connect.WithInterceptors(scopedconnect.NewInterceptor(scopedconnect.WithCommitMode(scopedconnect.Autocommit),
		scopedconnect.Bind(txs), scopedconnect.WithRetry(3, scopedsql.Retryable))))
	for _, c := range clients(t, url) {
		t.Run(c.name, func(t *testing.T) {
			runs.Store(0)
			code, msg := c.check(dbtest.Ctx(t), "")
			if code != int(connect.CodeAborted) || !strings.Contains(msg, "retry") || runs.Load() != 3 {
				t.Errorf("Check: code %d %q after %d runs, want Aborted after 3", code, msg, runs.Load())
			}
			runs.Store(0)
			_, code, _ = c.watch(dbtest.Ctx(t), "")
			if code != int(connect.CodeAborted) || runs.Load() != 1 {
				t.Errorf("Watch: code %d after %d runs, want Aborted after 1", code, runs.Load())
			}
		})
	}
}

func TestRetryNeedsAnAutomaticMode(t *testing.T) {
	defer func() {
		if p := recover(); p == nil || !strings.Contains(p.(string), "automatic commit mode") {
			t.Errorf("panic = %v, want one naming the automatic commit modes", p)
		}
	}()
	scopedconnect.NewInterceptor(scopedconnect.WithRetry(3, scopedsql.Retryable))
}
