package scopedsql_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// measure measures what a replica is worth with a delay of 0.5 ms each
// way between the pools and the servers (both on this machine): the
// throughput of read-only units on the primary alone and with one
// replica, and, at several apply delays of the replica, the share of the
// reads of clients that write and then read their own rows that the
// replica serves, with and without WithReplicaWait. It asserts nothing
// about time. Run it with
//
//	SCOPEDSQL_MEASURE=1 SCOPED_TEST_PG_CLUSTER=1 flock /tmp/bench.lock go test -run 'TestReplica/Measure' -v ./scopedsql/
func (s *replicas) measure(t *testing.T) {
	if os.Getenv("SCOPEDSQL_MEASURE") == "" {
		t.Skip("measurement: set SCOPEDSQL_MEASURE=1 to run it (under flock /tmp/bench.lock)")
	}
	const concurrency, rows, delay = 8, 1000, 500 * time.Microsecond
	round := 2 * time.Second
	ctx := dbtest.Ctx(t)
	if _, err := s.primary.ExecContext(ctx, "INSERT INTO "+s.table+" (id, n) SELECT i, 0 FROM generate_series(1000, 1000 + $1::int) i ON CONFLICT DO NOTHING", rows); err != nil {
		t.Fatal(err)
	}
	s.awaitReplayed(t, s.primaryPosition(t))
	_, primary := newDelayProxy(t, s.r.Primary.DSN, delay)
	_, replica := newDelayProxy(t, s.r.Standby.DSN, delay)
	read := func(txs *scoped.ScopedSession[*sql.Tx]) func(ctx context.Context, id int) error {
		return func(ctx context.Context, id int) error {
			_, _, err := s.read(ctx, txs, 1000+id)
			return err
		}
	}
	ro := &sql.TxOptions{ReadOnly: true}
	variants := []struct {
		name string
		fn   func(ctx context.Context, id int) error
	}{
		{"primary alone", read(scopedsql.NewTx(primary, ro))},
		{"one replica", read(scopedsql.NewTx(primary, ro, scopedsql.WithReplicas(replica)))},
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
			l, n, e := measureRound(t, concurrency, round, rows, variants[v].fn)
			lat[v], ops[v], elapsed[v] = append(lat[v], l...), ops[v]+n, elapsed[v]+e
		}
	}
	for v := range variants {
		slices.Sort(lat[v])
		t.Logf("read-only units, %v each way, %d at once: %-13s %5.0f/s p50 %5.2fms p99 %6.2fms", delay, concurrency, variants[v].name,
			float64(ops[v])/elapsed[v].Seconds(), ms(lat[v][len(lat[v])/2]), ms(lat[v][len(lat[v])*99/100]))
	}

	// Clients that write their row, then read it back three times, each
	// read a unit of its own carrying the client's position.
	defer s.r.SetApplyDelay(0)
	for _, apply := range []time.Duration{0, 5 * time.Millisecond, 50 * time.Millisecond} {
		s.r.SetApplyDelay(apply)
		for _, wait := range []time.Duration{0, 100 * time.Millisecond} {
			opts := []scopedsql.Option{scopedsql.WithReplicas(replica)}
			if wait > 0 {
				opts = append(opts, scopedsql.WithReplicaWait(wait))
			}
			txs := scopedsql.NewTx(primary, nil, opts...)
			var reads, onReplica, stale atomic.Int64
			var readLat []time.Duration
			var mu sync.Mutex
			var wg sync.WaitGroup
			stop := time.Now().Add(round)
			for c := range concurrency {
				wg.Add(1)
				go func() {
					defer wg.Done()
					client := scopedsql.WithReadAfter(context.Background(), 0)
					id := 2000 + c
					var mine []time.Duration
					for i := 1; time.Now().Before(stop); i++ {
						if err := s.write(client, txs, id, i); err != nil {
							t.Error(err)
							return
						}
						for range 3 {
							start := time.Now()
							next := scopedsql.WithReadAfter(context.Background(), scopedsql.CommitPosition(client))
							n, on, err := s.read(readOnly(t, next), txs, id)
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
			slices.Sort(readLat)
			w := "no wait"
			if wait > 0 {
				w = fmt.Sprintf("wait %v", wait)
			}
			t.Logf("apply delay %-5v %-12s: %5d reads, %3.0f%% served by the replica, %d stale, read p50 %5.2fms p99 %6.2fms",
				apply, w, reads.Load(), 100*float64(onReplica.Load())/float64(reads.Load()), stale.Load(),
				ms(readLat[len(readLat)/2]), ms(readLat[len(readLat)*99/100]))
			if stale.Load() != 0 {
				t.Errorf("%d stale reads", stale.Load())
			}
		}
	}
}

// measureRound runs fn from concurrency goroutines for d, each on rows of
// its own, and returns every call's latency, their count and the time
// taken.
func measureRound(t *testing.T, concurrency int, d time.Duration, rows int, fn func(ctx context.Context, id int) error) ([]time.Duration, int, time.Duration) {
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
