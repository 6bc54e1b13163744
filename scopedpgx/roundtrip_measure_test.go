package scopedpgx

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestMeasureRoundTrips measures what sending BEGIN with the first
// statement is worth on a network: a proxy adds a delay each way between
// the pools and PostgreSQL, and two units of work, read-modify-write
// (BEGIN, SELECT, UPDATE, COMMIT) and read-only (BEGIN, SELECT, COMMIT),
// run as hand-written pgx, as a scope of NewTx (verified commit on, the
// default) and as a scope of Tx with WithEagerBegin and
// WithoutVerifiedCommit (scopedpgx before BEGIN rode with the first
// statement), in interleaved rounds (A B C, C B A, ...) at fixed
// concurrency.
// It reports throughput and p50/p99 latency; it asserts nothing about
// time. Run it with
//
//	SCOPEDPGX_MEASURE=1 flock /tmp/bench.lock go test -run TestMeasureRoundTrips -v ./scopedpgx/
//
// SCOPEDPGX_MEASURE_ROUND (default 2s) and SCOPEDPGX_MEASURE_ROUNDS
// (default 4) set the length and number of rounds per variant.
func TestMeasureRoundTrips(t *testing.T) {
	if os.Getenv("SCOPEDPGX_MEASURE") == "" {
		t.Skip("measurement: set SCOPEDPGX_MEASURE=1 to run it (under flock /tmp/bench.lock)")
	}
	round := 2 * time.Second
	if v := os.Getenv("SCOPEDPGX_MEASURE_ROUND"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		round = d
	}
	rounds := 4
	if v := os.Getenv("SCOPEDPGX_MEASURE_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		rounds = n
	}
	const concurrency, rows = 8, 1000
	setup := newPool(t, 2)
	table := newTable(t, setup, "measure")
	if _, err := setup.Exec(context.Background(), "INSERT INTO "+table+" (id) SELECT generate_series(1, $1)", rows); err != nil {
		t.Fatal(err)
	}
	sel := "SELECT n FROM " + table + " WHERE id = $1"
	upd := "UPDATE " + table + " SET n = $2 WHERE id = $1"
	type unit func(ctx context.Context, tx pgx.Tx, id int) error
	units := []struct {
		name string
		fn   unit
	}{
		{"read-modify-write", func(ctx context.Context, tx pgx.Tx, id int) error {
			var n int
			if err := tx.QueryRow(ctx, sel, id).Scan(&n); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, upd, id, n+1)
			return err
		}},
		{"read-only", func(ctx context.Context, tx pgx.Tx, id int) error {
			var n int
			return tx.QueryRow(ctx, sel, id).Scan(&n)
		}},
	}
	for _, delay := range []time.Duration{0, 500 * time.Microsecond, 2 * time.Millisecond} {
		var pools [3]*pgxpool.Pool
		where := "loopback, direct"
		if delay == 0 {
			pools = [3]*pgxpool.Pool{newPool(t, concurrency), newPool(t, concurrency), newPool(t, concurrency)}
		} else {
			p := newProxy(t, delay)
			pools = [3]*pgxpool.Pool{p.pool(t, concurrency), p.pool(t, concurrency), p.pool(t, concurrency)}
			where = fmt.Sprintf("%v each way", delay)
		}
		txs := NewTx(pools[1], pgx.TxOptions{})
		// The transaction as scopedpgx made it before BEGIN rode with the
		// first statement: BEGIN at Current, COMMIT unverified.
		eager := NewTx(pools[2], pgx.TxOptions{}, WithEagerBegin(), WithoutVerifiedCommit())
		inScope := func(txs *scoped.ScopedSession[pgx.Tx]) func(ctx context.Context, u unit, id int) error {
			return func(ctx context.Context, u unit, id int) error {
				ctx, scope := scoped.Begin(ctx)
				defer scope.Remove()
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				if err := u(ctx, tx, id); err != nil {
					return err
				}
				return scope.Commit()
			}
		}
		variants := [3]func(ctx context.Context, u unit, id int) error{
			func(ctx context.Context, u unit, id int) error { // hand-written pgx
				return pgx.BeginFunc(ctx, pools[0], func(tx pgx.Tx) error { return u(ctx, tx, id) })
			},
			inScope(txs),
			inScope(eager),
		}
		for _, u := range units {
			var lat [3][]time.Duration
			var ops [3]int
			var elapsed [3]time.Duration
			for r := 0; r < rounds; r++ {
				order := []int{0, 1, 2}
				if r%2 == 1 {
					order = []int{2, 1, 0}
				}
				for _, v := range order {
					l, n, e := measureRound(t, concurrency, round, rows, func(ctx context.Context, id int) error { return variants[v](ctx, u.fn, id) })
					lat[v] = append(lat[v], l...)
					ops[v] += n
					elapsed[v] += e
				}
			}
			var tput, p50, p99 [3]float64
			for v := range 3 {
				slices.Sort(lat[v])
				tput[v] = float64(ops[v]) / elapsed[v].Seconds()
				p50[v] = float64(lat[v][len(lat[v])/2].Microseconds()) / 1000
				p99[v] = float64(lat[v][len(lat[v])*99/100].Microseconds()) / 1000
			}
			t.Logf("%-17s %-17s pgx %5.0f/s p50 %5.2fms p99 %6.2fms | scopedpgx %5.0f/s p50 %5.2fms p99 %6.2fms (%.2fx, p50 %.2fx) | eager %5.0f/s p50 %5.2fms p99 %6.2fms (new/eager %.2fx)",
				u.name, where, tput[0], p50[0], p99[0], tput[1], p50[1], p99[1], tput[1]/tput[0], p50[1]/p50[0],
				tput[2], p50[2], p99[2], tput[1]/tput[2])
		}
	}
}

// measureRound runs fn on concurrency goroutines for d and returns every
// call's latency, the number of calls and the time taken.
func measureRound(t *testing.T, concurrency int, d time.Duration, rows int, fn func(ctx context.Context, id int) error) ([]time.Duration, int, time.Duration) {
	t.Helper()
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(d)
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(stop) {
				s := time.Now()
				if err := fn(context.Background(), 1+rand.IntN(rows)); err != nil {
					t.Error(err)
					return
				}
				mine = append(mine, time.Since(s))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, len(all), time.Since(start)
}
