package scopedgrpc_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedgrpc"
	"github.com/go-scoped/scoped/scopedpgx"
)

func openPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(dbtest.Ctx(t), dbtest.Postgres(t).DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func insertPgx(ctx context.Context, table string, id int64) error {
	tx, err := scoped.Current[pgx.Tx](ctx)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id)
	return err
}

// TestPgxTx runs the interceptor with scopedpgx's guarded pgx.Tx: a
// commit, a rollback, pgx's own serialization failure at COMMIT mapped to
// Aborted, and a client that goes away while a query runs, so that the
// safety net ends the transaction on another goroutine (-race checks that
// it never races the query).
func TestPgxTx(t *testing.T) {
	db, table := openDB(t)
	pool := openPool(t)
	txs := scopedpgx.NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
	inserted := make(chan struct{}, 1)
	fu, _, done := finished()
	client := serve(t, &health{check: func(ctx context.Context) error {
		id := ctx.Value(idKey{}).(int64)
		if err := insertPgx(ctx, table, id); err != nil {
			return err
		}
		switch id {
		case 2:
			return status.Error(codes.FailedPrecondition, "no")
		case 4:
			inserted <- struct{}{}
			tx, _ := scoped.Current[pgx.Tx](ctx)
			_, err := tx.Exec(ctx, "SELECT pg_sleep(30)")
			return err
		}
		return nil
	}}, grpc.ChainUnaryInterceptor(fu, idFromMetadata,
		scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(txs))))

	call := func(ctx context.Context, id int64) error {
		_, err := client.Check(withID(ctx, id), &grpc_health_v1.HealthCheckRequest{})
		return err
	}
	ctx := dbtest.Ctx(t)
	if err := call(ctx, 1); err != nil {
		t.Fatalf("commit: %v", err)
	}
	wait(t, done)
	if err := call(ctx, 2); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("handler error: %v", err)
	}
	wait(t, done)
	if err := call(ctx, -3); status.Code(err) != codes.Aborted {
		t.Fatalf("serialization failure at COMMIT: client got %v, want Aborted", err)
	}
	wait(t, done)

	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- call(cctx, 4) }()
	<-inserted
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Errorf("client gone: client got %v, want Canceled", err)
	}
	wait(t, done)

	if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1}) {
		t.Errorf("ids = %v, want [1]", got)
	}
	deadline := time.Now().Add(bound)
	for pool.Stat().AcquiredConns() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d pgx connections still acquired", n)
	}
}
