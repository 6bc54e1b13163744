package scopedpgx

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/jackc/pgx/v5"
)

// TestTxBeginSurvivesTerminatedConnections is a pg_terminate_backend
// storm: round after round, every idle connection of the pool is
// terminated by the server, then as many requests as the pool has
// connections run at once. pgx's own BEGIN fails on those connections
// (SQLSTATE 57P01 or a reset connection); scopedpgx's first pipeline
// changed nothing there and runs again on a live connection: no request
// fails.
func TestTxBeginSurvivesTerminatedConnections(t *testing.T) {
	const app, conns, rounds = "scopedpgx_storm", 4, 25
	pool := newPool(t, conns, "application_name", app)
	table := newTable(t, pool, "storm")
	killer, err := pgx.Connect(context.Background(), dbtest.Postgres(t).DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Close(context.Background())
	txs := NewTx(pool, pgx.TxOptions{})
	var failed, id int
	var mu sync.Mutex
	for r := 0; r < rounds; r++ {
		// Fill the pool with idle connections, then have the server end
		// them all and wait until it has.
		held := make([]interface{ Release() }, 0, conns)
		for i := 0; i < conns; i++ {
			c, err := pool.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		for _, c := range held {
			c.Release()
		}
		if _, err := killer.Exec(context.Background(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", app); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(dbtest.Bound); ; {
			var n int
			if err := killer.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("terminated backends did not exit")
			}
			time.Sleep(time.Millisecond)
		}
		var wg sync.WaitGroup
		for i := 0; i < conns; i++ {
			id++
			wg.Add(1)
			go func(id int) {
				defer wg.Done()
				ctx, scope := scoped.Begin(context.Background())
				defer scope.Remove()
				err := func() error {
					tx, err := txs.Current(ctx)
					if err != nil {
						return err
					}
					if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id); err != nil {
						return err
					}
					return scope.Commit()
				}()
				if err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
					t.Logf("request %d: %v", id, err)
				}
			}(id)
		}
		wg.Wait()
	}
	if failed != 0 {
		t.Errorf("%d of %d requests failed on terminated connections, want none", failed, id)
	}
	if got := len(ids(t, pool, table)); got != id-failed {
		t.Errorf("%d rows, want %d", got, id-failed)
	}
}
