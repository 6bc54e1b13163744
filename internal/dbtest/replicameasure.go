package dbtest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ReplicaMeasure is what [Replicated.Measure] needs of a driver's test.
type ReplicaMeasure struct {
	// Env is the variable that enables the measurement, such as
	// SCOPEDPGX_MEASURE: it is timed, and runs only under flock
	// /tmp/bench.lock.
	Env string
	// Table is the test's table (id int primary key, n int) on the
	// primary.
	Table string
	// Delayed returns the units to measure, over pools of conns
	// connections each to the primary and to the standby, through proxies
	// that delay every chunk by delay, each way.
	Delayed func(t *testing.T, delay time.Duration, conns int) ReplicaUnits
}

// ReplicaUnits are the units [Replicated.Measure] runs.
type ReplicaUnits struct {
	// PrimaryAlone and OneReplica run a read-only unit reading row id,
	// the first on a primary without replicas, the second with one.
	PrimaryAlone, OneReplica func(ctx context.Context, id int) error
	// Clients are clients whose units may run on the replica, which
	// waits up to wait (0: none, WithReplicaWait) for a position.
	Clients func(wait time.Duration) ReadYourWrites
}

// Measure measures what a replica is worth with a delay of 0.5 ms each
// way between the pools and the servers (both on this machine): the
// throughput of read-only units on the primary alone and with one
// replica, and, at several apply delays of the replica, the share of the
// reads of clients that write and then read their own rows that the
// replica serves, with and without WithReplicaWait. It asserts nothing
// about time, and fails t on a stale read. It skips t without m.Env.
func (r *Replicated) Measure(t *testing.T, m ReplicaMeasure) {
	if os.Getenv(m.Env) == "" {
		t.Skipf("measurement: set %s=1 to run it (under flock /tmp/bench.lock)", m.Env)
	}
	const concurrency, rows, delay = 8, 1000, 500 * time.Microsecond
	round := 2 * time.Second
	if _, err := r.Primary.query(fmt.Sprintf("INSERT INTO %s (id, n) SELECT i, 0 FROM generate_series(1000, %d) i ON CONFLICT DO NOTHING", m.Table, 1000+rows)); err != nil {
		t.Fatal(err)
	}
	lsn, err := r.Primary.query("SELECT pg_current_wal_insert_lsn()")
	if err != nil {
		t.Fatal(err)
	}
	r.AwaitReplayed(t, position(lsn))
	u := m.Delayed(t, delay, 2*concurrency)
	variants := []struct {
		name string
		fn   func(ctx context.Context, id int) error
	}{
		{"primary alone", u.PrimaryAlone},
		{"one replica", u.OneReplica},
	}
	lat := make([][]time.Duration, len(variants))
	ops := make([]int, len(variants))
	elapsed := make([]time.Duration, len(variants))
	for r := range 4 { // interleaved, alternating the order
		for i := range variants {
			v := i
			if r%2 == 1 {
				v = len(variants) - 1 - i
			}
			l, n, e := MeasureRound(t, concurrency, round, rows, func(ctx context.Context, id int) error { return variants[v].fn(ctx, 1000+id) })
			lat[v], ops[v], elapsed[v] = append(lat[v], l...), ops[v]+n, elapsed[v]+e
		}
	}
	for v := range variants {
		slices.Sort(lat[v])
		t.Logf("read-only units, %v each way, %d at once: %-13s %5.0f/s p50 %5.2fms p99 %6.2fms", delay, concurrency, variants[v].name,
			float64(ops[v])/elapsed[v].Seconds(), ms(lat[v][len(lat[v])/2]), ms(lat[v][len(lat[v])*99/100]))
	}

	defer r.SetApplyDelay(0)
	for _, apply := range []time.Duration{0, 5 * time.Millisecond, 50 * time.Millisecond} {
		r.SetApplyDelay(apply)
		for _, wait := range []time.Duration{0, 100 * time.Millisecond} {
			w := "no wait"
			if wait > 0 {
				w = fmt.Sprintf("wait %v", wait)
			}
			u.Clients(wait).measure(t, fmt.Sprintf("apply delay %-5v %-12s", apply, w), concurrency, round)
		}
	}
}

// measure runs concurrency clients for d, each writing its row, then
// reading it back three times, each read a unit of its own carrying the
// client's position; it logs the reads' latency and the share the
// replica served, and fails t on a stale read.
func (c ReadYourWrites) measure(t *testing.T, what string, concurrency int, d time.Duration) {
	var reads, onReplica, stale atomic.Int64
	var readLat []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for cl := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := c.Client(context.Background())
			id := 2000 + cl
			var mine []time.Duration
			for i := 1; time.Now().Before(stop); i++ {
				if err := c.Write(client, id, i); err != nil {
					t.Error(err)
					return
				}
				for range 3 {
					start := time.Now()
					n, on, err := c.ReadNext(context.Background(), client, id)
					if err != nil {
						t.Error(err)
						return
					}
					mine = append(mine, time.Since(start))
					reads.Add(1)
					if on {
						onReplica.Add(1)
					}
					if n != i {
						stale.Add(1)
					}
				}
			}
			mu.Lock()
			readLat = append(readLat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(readLat) == 0 {
		t.Fatalf("%s: no read", what)
	}
	slices.Sort(readLat)
	t.Logf("%s: %5d reads, %3.0f%% served by the replica, %d stale, read p50 %5.2fms p99 %6.2fms",
		what, reads.Load(), 100*float64(onReplica.Load())/float64(reads.Load()), stale.Load(),
		ms(readLat[len(readLat)/2]), ms(readLat[len(readLat)*99/100]))
	if stale.Load() != 0 {
		t.Errorf("%d stale reads", stale.Load())
	}
}

// MeasureRound runs fn from concurrency goroutines for d, on ids from 0
// to rows-1 spread over them, and returns every call's latency, their
// count and the time taken.
func MeasureRound(t *testing.T, concurrency int, d time.Duration, rows int, fn func(ctx context.Context, id int) error) ([]time.Duration, int, time.Duration) {
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(d)
	for g := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := 0; time.Now().Before(stop); i++ {
				s := time.Now()
				if err := fn(context.Background(), (g*97+i)%rows); err != nil {
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

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// position is a position as PostgreSQL writes it (pg_lsn).
type position string

func (p position) String() string { return string(p) }
