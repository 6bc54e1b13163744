package scopedpgx

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The request's context is cancelled while the pipeline of BEGIN, the
// setup and the first statement (a write) runs on the server. The
// statement fails with the cancellation; the handler, ignoring it, writes
// again with a context of its own and returns: the unit's commit fails,
// nothing is saved, and the connection is no longer acquired. With and
// without the safety net (which then ends the scope on its own goroutine
// while the statement is in flight), with and without a setup, with
// pgx's default cancellation (the connection is closed) and with a cancel
// request (the server fails the statement, the connection stays).
func TestReview7CancelDuringTheFirstPipeline(t *testing.T) {
	for _, begin := range beginners {
		for _, setup := range []bool{false, true} {
			testReview7CancelDuringTheFirstPipeline(t, begin.name, begin.begin, setup, newPool(t, 1))
			testReview7CancelDuringTheFirstPipeline(t, begin.name+" cancel request", begin.begin, setup, review7CancelRequestPool(t))
		}
	}
}

// review7CancelRequestPool is a pool of one connection whose cancelled
// statements are cancelled by a cancel request, the connection kept,
// rather than by closing it (pgx's default).
func review7CancelRequestPool(t *testing.T) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(dbtest.Postgres(t).DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, CancelRequestDelay: 0, DeadlineDelay: 5 * time.Second}
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func testReview7CancelDuringTheFirstPipeline(t *testing.T, name string, begin func(context.Context) (context.Context, *scoped.Scope), setup bool, pool *pgxpool.Pool) {
	t.Helper()
	{
		{
			table := newTable(t, pool, "review7_cancel")
			pc, err := pool.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			pid := pc.Conn().PgConn().PID()
			pc.Release()
			var opts []Option
			if setup {
				opts = append(opts, WithSetup(func(_ context.Context, b *pgx.Batch) error {
					b.Queue("select set_config('application_name', 'review7', true)")
					return nil
				}))
			}
			txs := NewTx(pool, pgx.TxOptions{}, append(opts, scoped.WithTeardownErrorHook(nil))...)
			base, cancel := context.WithCancel(context.Background())
			ctx, scope := begin(base)
			tx, err := txs.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				awaitActive(t, pid, "INSERT INTO")
				cancel()
			}()
			_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id) SELECT $1::int FROM pg_sleep(10)", 1)
			// A cancel request makes the server fail the statement (57014).
			if err == nil || !errors.Is(err, context.Canceled) && !strings.Contains(name, "cancel request") {
				t.Errorf("%s, setup %v: first statement: %v, want context.Canceled", name, setup, err)
			}
			_, _ = tx.Exec(context.Background(), "INSERT INTO "+table+" (id) VALUES (2)")
			if err := scope.Commit(); err == nil {
				t.Errorf("%s, setup %v: commit succeeded", name, setup)
			}
			if got := ids(t, pool, table); len(got) != 0 {
				t.Errorf("%s, setup %v: rows %v saved", name, setup, got)
			}
			if n := pool.Stat().AcquiredConns(); n != 0 {
				t.Errorf("%s, setup %v: %d connections acquired", name, setup, n)
			}
		}
	}
}
