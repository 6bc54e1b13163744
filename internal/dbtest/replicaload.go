package dbtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ReadYourWrites is how a driver's replica test runs the units of clients
// that write their row and then read it back, so that the loads below,
// the same for every driver, can check that no read is stale.
type ReadYourWrites struct {
	// Client returns ctx as a client that gets its commit positions
	// (WithReadAfter(ctx, 0)).
	Client func(ctx context.Context) context.Context
	// Write sets row id's n in a unit of its own, as client.
	Write func(client context.Context, id, n int) error
	// ReadNext reads row id (-1: none) in a read-only unit of the client's
	// next request, which carries the client's position only, under ctx,
	// and says where it ran.
	ReadNext func(ctx, client context.Context, id int) (n int, onReplica bool, err error)
}

// UnderLoad runs clients writers at once, each writing its row and
// reading it back rounds times, and fails t if a read is stale (it
// misses the client's own write). Rows 200 to 200+clients are theirs.
func (c ReadYourWrites) UnderLoad(t *testing.T, clients, rounds int) {
	var onReplica, stale atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := c.Client(Ctx(t))
			id := 200 + cl
			for i := 1; i <= rounds; i++ {
				if err := c.Write(client, id, i); err != nil {
					errs <- err
					return
				}
				n, on, err := c.ReadNext(Ctx(t), client, id)
				if err != nil {
					errs <- err
					return
				}
				if n != i {
					stale.Add(1)
				}
				if on {
					onReplica.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d reads after their client's write: %d stale, %d served by the replica", clients*rounds, stale.Load(), onReplica.Load())
	if stale.Load() != 0 {
		t.Errorf("%d stale reads", stale.Load())
	}
}

// StoppedMidLoad is what readers saw while the replica stopped under them.
type StoppedMidLoad struct {
	Done, OnReplica, OnPrimary int64
	Failed                     []error
}

// StopUnderReads runs readers goroutines that call read (reader r's unit
// number i) in a loop, stops the standby with mode once each has run 11
// units, and returns once each has run one unit begun after the stop.
func (r *Replicated) StopUnderReads(mode StopMode, readers int, read func(reader int) (onReplica bool, err error)) StoppedMidLoad {
	var done, onReplica, onPrimary atomic.Int64
	var failed []error
	var mu sync.Mutex
	stop := make(chan struct{})
	warm := make(chan struct{}, readers)
	after := make(chan struct{}, readers)
	stopped := make(chan struct{})
	var wg sync.WaitGroup
	for rd := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				var afterStop bool
				select {
				case <-stopped:
					afterStop = true
				default:
				}
				on, err := read(rd)
				if err != nil {
					mu.Lock()
					failed = append(failed, fmt.Errorf("reader %d unit %d: %w", rd, i, err))
					mu.Unlock()
				} else if on {
					onReplica.Add(1)
				} else {
					onPrimary.Add(1)
				}
				done.Add(1)
				if i == 10 {
					warm <- struct{}{}
				}
				if afterStop {
					after <- struct{}{}
					<-stop
					return
				}
			}
		}()
	}
	for range readers {
		<-warm
	}
	r.Standby.Stop(mode)
	close(stopped)
	for range readers {
		<-after
	}
	close(stop)
	wg.Wait()
	return StoppedMidLoad{Done: done.Load(), OnReplica: onReplica.Load(), OnPrimary: onPrimary.Load(), Failed: failed}
}

// Check fails t for every unit that failed, and if none ran on the
// primary after the replica stopped.
func (l StoppedMidLoad) Check(t testing.TB) {
	t.Helper()
	for _, err := range l.Failed {
		t.Error(err)
	}
	if l.OnPrimary == 0 {
		t.Error("no unit ran on the primary after the replica stopped")
	}
}

// AwaitStandby polls the standby, on a connection of its own, until cond
// (an SQL boolean of $1, the position pos) holds. [Bound] bounds it.
func (r *Replicated) AwaitStandby(t testing.TB, cond string, pos fmt.Stringer) {
	t.Helper()
	ctx := Ctx(t)
	q := "SELECT coalesce(" + strings.ReplaceAll(cond, "$1", "'"+pos.String()+"'") + ", false)"
	for {
		out, err := r.Standby.query(q)
		if err != nil {
			t.Fatalf("standby %s: %v", r.Standby.Name, err)
		}
		if out == "t" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("standby: %s not true for %s within %v", cond, pos, Bound)
		case <-time.After(5 * time.Millisecond): // polling a server: no event to wait on
		}
	}
}

// AwaitReplayed waits until the standby has replayed pos.
func (r *Replicated) AwaitReplayed(t testing.TB, pos fmt.Stringer) {
	t.Helper()
	r.AwaitStandby(t, "pg_last_wal_replay_lsn() >= $1::text::pg_lsn", pos)
}
