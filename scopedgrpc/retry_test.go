package scopedgrpc_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedgrpc"
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

// counterTable is one row (id 1, n 0) in a fresh table, dropped at the end.
func counterTable(t *testing.T, db *sql.DB) string {
	t.Helper()
	table := dbtest.Table("grpc_retry")
	ctx := dbtest.Ctx(t)
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id INT PRIMARY KEY, n BIGINT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP TABLE "+table) })
	if _, err := db.ExecContext(ctx, "INSERT INTO "+table+" VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	return table
}

// 32 concurrent unary calls increment one counter at SERIALIZABLE through
// a service function in its own unit of work with retries, whose errors
// the handler turns into a status: under WithRetry all succeed and the
// counter is exact.
func TestUnaryRetryConcurrentIncrements(t *testing.T) {
	const n = 32
	db, _ := openDB(t)
	warm(t, db, n)
	table := counterTable(t, db)
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
	client := serve(t, &health{check: func(ctx context.Context) error {
		runs.Add(1)
		if err := increment(ctx); err != nil {
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
