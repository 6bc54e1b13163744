package scopedpgx

import (
	"context"
	"os"
	"testing"

	"github.com/go-scoped/scoped"
)

// The core's safety net ends a scope on its own goroutine as soon as the
// scope's context is cancelled, even while the scope's handler is inside a
// call on the session. A *pgxpool.Conn cannot be guarded as a pgx.Tx is
// (the session type is pgxpool's own), so its reset and release run on a
// connection that another goroutine is still reading: a data race in pgx
// which also crashes the process ("close of closed channel" in pgconn).
// This test proves it and is skipped until the core lets a ScopedSession
// keep its sessions out of the safety net (or defers the net's teardown
// until the scope is no longer in use); see the package documentation.
func TestConnCancelledMidQueryReleasesConnection(t *testing.T) {
	if os.Getenv("SCOPEDPGX_CORE_BUG") == "" {
		t.Skip("core bug: the safety net tears a pinned connection down while a query is in flight; " +
			"set SCOPEDPGX_CORE_BUG=1 to run (it fails under -race or crashes)")
	}
	pool := newPool(t, 2)
	r := NewConn(pool)
	for i := range 10 {
		base, cancel := context.WithCancel(context.Background())
		ctx, scope := scoped.Begin(base)
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
		_, _ = c.Exec(ctx, "SELECT pg_sleep(10)")
		if err := scope.Remove(); err != nil {
			t.Errorf("round %d: Remove: %v", i, err)
		}
		if n := pool.Stat().AcquiredConns(); n != 0 {
			t.Fatalf("round %d: %d connections still acquired", i, n)
		}
	}
}
