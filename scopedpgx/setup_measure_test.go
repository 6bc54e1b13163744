package scopedpgx

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestMeasureTenantSetup measures what sending the setup with BEGIN and
// the first statement is worth on a network: a tenant-scoped
// read-modify-write (set_config of the tenant, SELECT, UPDATE, COMMIT)
// as hand-written pgx that sends set_config as its own statement after
// BEGIN, and as a scope of NewTx with WithSetup, through a proxy that adds
// a delay each way, in interleaved rounds at fixed concurrency. It reports
// throughput and p50/p99 latency; it asserts nothing about time. Run it
// with
//
//	SCOPEDPGX_MEASURE=1 flock /tmp/bench.lock go test -run TestMeasureTenantSetup -v ./scopedpgx/
func TestMeasureTenantSetup(t *testing.T) {
	if os.Getenv("SCOPEDPGX_MEASURE") == "" {
		t.Skip("measurement: set SCOPEDPGX_MEASURE=1 to run it (under flock /tmp/bench.lock)")
	}
	const concurrency, rows, rounds, round = 8, 1000, 4, 2 * time.Second
	setup := newPool(t, 2)
	table := newTable(t, setup, "measure_setup")
	if _, err := setup.Exec(context.Background(), "INSERT INTO "+table+" (id) SELECT generate_series(1, $1)", rows); err != nil {
		t.Fatal(err)
	}
	sel := "SELECT n FROM " + table + " WHERE id = $1"
	upd := "UPDATE " + table + " SET n = $2 WHERE id = $1"
	setTenantSQL := "select set_config('app.tenant_id', $1, true)"
	rmw := func(ctx context.Context, tx pgx.Tx, id int) error {
		var n int
		if err := tx.QueryRow(ctx, sel, id).Scan(&n); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, upd, id, n+1)
		return err
	}
	for _, delay := range []time.Duration{500 * time.Microsecond, 2 * time.Millisecond} {
		p := newProxy(t, delay)
		pools := [2]*pgxpool.Pool{p.pool(t, concurrency), p.pool(t, concurrency)}
		txs := NewTx(pools[1], pgx.TxOptions{}, WithSetup(setTenant))
		variants := [2]func(ctx context.Context, id int) error{
			func(ctx context.Context, id int) error { // hand-written pgx
				return pgx.BeginFunc(ctx, pools[0], func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, setTenantSQL, ctx.Value(tenantKey{}).(string)); err != nil {
						return err
					}
					return rmw(ctx, tx, id)
				})
			},
			func(ctx context.Context, id int) error {
				ctx, scope := scoped.Begin(ctx)
				defer scope.Remove()
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				if err := rmw(ctx, tx, id); err != nil {
					return err
				}
				return scope.Commit()
			},
		}
		var lat [2][]time.Duration
		var ops [2]int
		var elapsed [2]time.Duration
		for r := 0; r < rounds; r++ {
			order := []int{0, 1}
			if r%2 == 1 {
				order = []int{1, 0}
			}
			for _, v := range order {
				l, n, e := measureRound(t, concurrency, round, rows, func(ctx context.Context, id int) error {
					return variants[v](context.WithValue(ctx, tenantKey{}, "tenant-a"), id)
				})
				lat[v] = append(lat[v], l...)
				ops[v] += n
				elapsed[v] += e
			}
		}
		var tput, p50, p99 [2]float64
		for v := range 2 {
			slices.Sort(lat[v])
			tput[v] = float64(ops[v]) / elapsed[v].Seconds()
			p50[v] = float64(lat[v][len(lat[v])/2].Microseconds()) / 1000
			p99[v] = float64(lat[v][len(lat[v])*99/100].Microseconds()) / 1000
		}
		t.Logf("tenant read-modify-write %-9s pgx+set_config %5.0f/s p50 %5.2fms p99 %6.2fms | scopedpgx WithSetup %5.0f/s p50 %5.2fms p99 %6.2fms (%.2fx, p50 %.2fx)",
			fmt.Sprint(delay)+" each way", tput[0], p50[0], p99[0], tput[1], p50[1], p99[1], tput[1]/tput[0], p50[1]/p50[0])
	}
}
