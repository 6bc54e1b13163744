package scopedpgx

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
)

// A transaction begun on the scope's own pinned connection is created
// after the connection, so it ends before the connection is reset: the
// connection goes back to the pool, reset, instead of being destroyed as
// a connection still inside a transaction (issue 10, item 1).
func TestTxOnPinnedConnIsEndedBeforeTheConnIsReset(t *testing.T) {
	pool := newPool(t, 1)
	conns := NewConn(pool)
	txs := scoped.New(func(ctx context.Context) (pgx.Tx, error) {
		c, err := conns.Current(ctx)
		if err != nil {
			return nil, err
		}
		return c.Begin(ctx)
	})
	pid := func(ctx context.Context) uint32 {
		c, err := conns.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c.Conn().PgConn().PID()
	}
	ctx, scope := scoped.Begin(dbtest.Ctx(t))
	tx, err := txs.Current(ctx) // first call: the tx; first created: the conn
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	first := pid(ctx)
	if err := scope.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Fatalf("%d connections still acquired", n)
	}
	ctx2, scope2 := scoped.Begin(dbtest.Ctx(t))
	defer scope2.Remove()
	if again := pid(ctx2); again != first {
		t.Fatalf("backend %d after Remove, want %d again: the pinned connection was destroyed, not reset", again, first)
	}
}
