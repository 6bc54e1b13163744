package scopedpgx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/jackc/pgx/v5"
)

// pgx users release what they acquire (defer conn.Release()), a habit
// they bring to a pinned connection. The connection then goes back to the
// pool with the unit's session state, before NewConn's reset could run;
// the scope's end must neither panic nor pass over it in silence, and the
// pool must not count it acquired.
func TestPinnedConnReleasedByHand(t *testing.T) {
	pool := newPool(t, 1)
	conns := NewConn(pool)
	ctx, scope := scoped.Begin(context.Background())
	c, err := conns.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SET application_name = 'released-by-hand'"); err != nil {
		t.Fatal(err)
	}
	c.Release()
	done := make(chan any, 1)
	go func() {
		defer func() { done <- recover() }()
		done <- scope.Remove()
	}()
	got := testkit.WaitFor(t, done, "Remove to return")
	if err, ok := got.(error); !ok || !errors.Is(err, errReleasedByHand) {
		t.Fatalf("Remove of a unit whose pinned connection was released by hand = %v (%T), "+
			"want an error saying the connection was released by hand and its session not reset", got, got)
	}
	t.Logf("Remove: %v", got)
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired", n)
	}
}

// A sqlc-style Queries over NewDBTX used in nested units whose first
// statement comes from the inner unit: the failed inner unit's write is
// undone alone, the outer unit's kept; a failed outer unit undoes an inner
// unit that succeeded; outside any unit the same Queries writes on the pool.
func TestDBTXNestedUnitsFirstUseInTheInnerUnit(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgx_dbtxnest")
	txs := NewTx(pool, pgx.TxOptions{})
	q := NewDBTX(pool, txs)
	insert := func(ctx context.Context, id int) error {
		_, err := q.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id)
		return err
	}
	errFail := errors.New("unit fails")
	ctx := context.Background()
	err := scoped.Run(ctx, func(ctx context.Context) error {
		if err := scoped.Run(ctx, func(ctx context.Context) error {
			if err := insert(ctx, 1); err != nil {
				return err
			}
			return errFail
		}); !errors.Is(err, errFail) {
			return fmt.Errorf("inner unit: %v", err)
		}
		return insert(ctx, 2)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, pool, table); !slices.Equal(got, []int{2}) {
		t.Fatalf("rows %v, want [2]: the failed inner unit's row undone alone", got)
	}
	err = scoped.Run(ctx, func(ctx context.Context) error {
		if err := scoped.Run(ctx, func(ctx context.Context) error { return insert(ctx, 3) }); err != nil {
			return err
		}
		return errFail
	})
	if !errors.Is(err, errFail) {
		t.Fatal(err)
	}
	if err := insert(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, pool, table); !slices.Equal(got, []int{2, 4}) {
		t.Fatalf("rows %v, want [2 4]: the failed outer unit undoes its inner unit", got)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired", n)
	}
}
