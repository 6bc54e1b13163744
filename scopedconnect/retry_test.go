package scopedconnect_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedconnect"
	"github.com/go-scoped/scoped/scopedsql"
)

// 32 concurrent unary calls (half over the Connect protocol, half over
// gRPC) increment one counter at SERIALIZABLE through a service function
// in its own unit of work with retries, whose error the handler turns
// into CodeInternal: under WithRetry all succeed and the counter is exact.
func TestUnaryRetryConcurrentIncrements(t *testing.T) {
	const n = 32
	db, _ := openDB(t)
	counter := dbtest.CreateCounter(t, db, "connect_retry", n)
	txs := scoped.New(scopedsql.Tx(db, &sql.TxOptions{Isolation: sql.LevelSerializable}), scoped.WithTeardownErrorHook(nil))
	increment := counter.Service(txs.Current, scopedsql.Retryable)
	url := serve(t, &service{check: func(ctx context.Context, _ string) error {
		if err := increment(ctx, 1); err != nil {
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
	counter.Check(t, n)
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
