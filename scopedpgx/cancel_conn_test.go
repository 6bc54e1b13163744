package scopedpgx

import (
	"context"
	"os"
	"testing"

	"github.com/go-scoped/scoped"
)

// A pinned connection whose scope's context is cancelled mid-query is
// closed (pgx closed it) and out of the pool when Remove returns, provided
// the scope has no safety net: see TestConnUnderSafetyNetRacesQuery.
func TestConnCancelledMidQueryReleasesConnection(t *testing.T) {
	testConnCancelledMidQuery(t, scoped.BeginWithoutSafetyNet)
}

// The core's safety net (scoped.Begin) ends a scope on its own goroutine as
// soon as the scope's context is cancelled, even while the handler is
// inside a call on the session. A *pgxpool.Conn cannot be guarded as
// NewTx's transactions are (the session type is pgxpool's own), so its
// reset and release run on a connection another goroutine is still
// reading: a data race in pgx, which also crashes the process ("close of
// closed channel" in pgconn). The core documents the cure,
// BeginWithoutSafetyNet, but it is the scope's creator who must know which
// session types the scope will hold. Skipped unless SCOPEDPGX_CORE_BUG is
// set, until a ScopedSession can keep its sessions out of the net.
func TestConnUnderSafetyNetRacesQuery(t *testing.T) {
	if os.Getenv("SCOPEDPGX_CORE_BUG") == "" {
		t.Skip("known core limitation: the safety net of scoped.Begin tears a pinned connection down " +
			"while a query is in flight; set SCOPEDPGX_CORE_BUG=1 to run (fails under -race, or crashes)")
	}
	testConnCancelledMidQuery(t, scoped.Begin)
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
