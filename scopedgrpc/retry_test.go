package scopedgrpc_test

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedgrpc"
	"github.com/go-scoped/scoped/scopedsql"
)

// 32 concurrent unary calls increment one counter at SERIALIZABLE through
// a service function in its own unit of work with retries, whose errors
// the handler turns into a status: under WithRetry all succeed and the
// counter is exact.
func TestUnaryRetryConcurrentIncrements(t *testing.T) {
	const n = 32
	db, _ := openDB(t)
	counter := dbtest.CreateCounter(t, db, "grpc_retry", n)
	txs := scoped.New(scopedsql.Tx(db, &sql.TxOptions{Isolation: sql.LevelSerializable}), scoped.WithTeardownErrorHook(nil))
	increment := counter.Service(txs.Current, scopedsql.Retryable)
	client := serve(t, &health{check: func(ctx context.Context) error {
		if err := increment(ctx, 1); err != nil {
			return status.Error(codes.Internal, err.Error())
		}
		return nil
	}}, grpc.ChainUnaryInterceptor(scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit),
		scopedgrpc.Bind(txs), scopedgrpc.WithRetry(n, scopedsql.Retryable))))

	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	counter.Check(t, n)
}

// A serialization failure at COMMIT runs the call again; the attempts are
// bounded, and after the last the client gets Aborted. A handler that
// returns a retryable error is run again too.
func TestUnaryRetryAtCommitIsBounded(t *testing.T) {
	db, table := openDB(t)
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	var runs atomic.Int32
	var failFirst int32 // runs whose COMMIT fails
	var returnErr atomic.Bool
	client := serve(t, &health{check: func(ctx context.Context) error {
		r := runs.Add(1)
		id := int64(r)
		if r <= atomic.LoadInt32(&failFirst) {
			id = -id // its COMMIT fails with 40001
		}
		if err := insert(ctx, table, id); err != nil {
			return err
		}
		if returnErr.Load() && r == 1 {
			tx, err := txs.Current(ctx)
			if err == nil {
				_, err = tx.ExecContext(ctx, "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = 'serialization_failure'; END $$")
			}
			return err // the raw serialization failure
		}
		return nil
	}}, grpc.ChainUnaryInterceptor(scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit),
		scopedgrpc.Bind(txs), scopedgrpc.WithRetry(3, scopedsql.Retryable))))

	atomic.StoreInt32(&failFirst, 2)
	if _, err := client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{}); err != nil || runs.Load() != 3 {
		t.Fatalf("Check = %v after %d runs, want OK after 3", err, runs.Load())
	}
	if ids := dbtest.IDs(t, db, table); !slices.Equal(ids, []int64{3}) {
		t.Errorf("ids = %v, want only the third run's", ids)
	}

	runs.Store(0)
	atomic.StoreInt32(&failFirst, 100)
	_, err := client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != codes.Aborted || !strings.Contains(st.Message(), "retry") || runs.Load() != 3 {
		t.Errorf("Check = %v after %d runs, want Aborted after 3", err, runs.Load())
	}

	runs.Store(0)
	atomic.StoreInt32(&failFirst, 0)
	returnErr.Store(true)
	if _, err := client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{}); err != nil || runs.Load() != 2 {
		t.Errorf("Check = %v after %d runs, want OK after 2 (the handler's serialization failure retried)", err, runs.Load())
	}
}

// A streaming call is never run again.
func TestStreamIsNeverRetried(t *testing.T) {
	db, table := openDB(t)
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	var runs atomic.Int32
	client := serve(t, &health{watch: func(ctx context.Context, send func() error) error {
		runs.Add(1)
		return insert(ctx, table, -1) // COMMIT fails with 40001
	}}, grpc.ChainStreamInterceptor(scopedgrpc.StreamServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit),
		scopedgrpc.Bind(txs), scopedgrpc.WithRetry(3, scopedsql.Retryable))))
	stream, err := client.Watch(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Aborted || runs.Load() != 1 {
		t.Errorf("stream ended with %v after %d runs, want Aborted after 1", err, runs.Load())
	}
}

func TestRetryNeedsAnAutomaticMode(t *testing.T) {
	defer func() {
		if p := recover(); p == nil || !strings.Contains(p.(string), "automatic commit mode") {
			t.Errorf("panic = %v, want one naming the automatic commit modes", p)
		}
	}()
	scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithRetry(3, scopedsql.Retryable))
}
