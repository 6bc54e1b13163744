package scopedpgx

import (
	"context"
	"testing"

	"github.com/go-scoped/scoped"
)

// A pinned connection whose scope's context is cancelled mid-query is
// closed (pgx closed it) and out of the pool when Remove returns, under
// both kinds of scope.
func TestConnCancelledMidQueryReleasesConnection(t *testing.T) {
	t.Run("BeginWithoutSafetyNet", func(t *testing.T) {
		testConnCancelledMidQuery(t, scoped.BeginWithoutSafetyNet)
	})
	// The core's safety net (scoped.Begin) ends a scope on its own
	// goroutine as soon as the scope's context is cancelled. A
	// *pgxpool.Conn cannot be guarded as NewTx's transactions are, so NewConn
	// is created WithoutSafetyNet: the net is disarmed for a scope holding
	// one, and the handler's running query is never raced by a release (a
	// data race in pgx that also crashes the process with "close of closed
	// channel" in pgconn). Run it under -race.
	t.Run("Begin", func(t *testing.T) {
		testConnCancelledMidQuery(t, scoped.Begin)
	})
}

func testConnCancelledMidQuery(t *testing.T, begin func(context.Context) (context.Context, *scoped.Scope)) {
	pool := newPool(t, 2)
	var hooked []error
	r := NewConn(pool, scoped.WithTeardownErrorHook(func(_ context.Context, err error) {
		hooked = append(hooked, err)
	}))
	for i := range 10 {
		base, cancel := context.WithCancel(context.Background())
		ctx, scope := begin(base)
		defer scope.Remove()
		c, err := r.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pid := c.Conn().PgConn().PID()
		go func() {
			awaitActive(t, pid, "SELECT pg_sleep(10)")
			cancel()
		}()
		if _, err := c.Exec(ctx, "SELECT pg_sleep(10)"); err == nil {
			t.Fatalf("round %d: cancelled query succeeded", i)
		}
		if err := scope.Remove(); err != nil {
			t.Errorf("round %d: Remove: %v", i, err)
		}
		if n := pool.Stat().AcquiredConns(); n != 0 {
			t.Fatalf("round %d: %d connections still acquired", i, n)
		}
	}
	var one int
	if err := pool.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("pool after cancellations: %v", err)
	}
	if st := r.Stats(); st.Failed != 0 || len(hooked) != 0 {
		t.Errorf("stats %+v, hook saw %v: want no failure", st, hooked)
	}
}
