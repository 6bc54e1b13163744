package scopedpgx

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
)

// A nested scoped.Run through scopedpgx on a pool of one connection is a
// savepoint of the caller's pgx transaction: undone alone when it fails,
// undone with the caller when the caller fails (issue 12). A second
// transaction would wait for the pool forever.
func TestNestedRunJoinsTheCallersPgxTransaction(t *testing.T) {
	pool := newPool(t, 1)
	admin := newPool(t, 1)
	table := newTable(t, admin, "scopedpgx_nest")
	if _, err := admin.Exec(context.Background(), "INSERT INTO "+table+" (id, n) VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	txs := NewTx(pool, pgx.TxOptions{})
	add := func(ctx context.Context, d int) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE "+table+" SET n = n + $1 WHERE id = 1", d)
		return err
	}
	value := func() int {
		var n int
		if err := admin.QueryRow(context.Background(), "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	errInner, errOuter := errors.New("inner fails"), errors.New("outer fails")
	ctx := dbtest.Ctx(t)
	err := scoped.Run(ctx, func(ctx context.Context) error {
		if err := add(ctx, 1); err != nil {
			return err
		}
		if err := scoped.Run(ctx, func(ctx context.Context) error {
			if err := add(ctx, 10); err != nil {
				return err
			}
			return errInner
		}); !errors.Is(err, errInner) {
			return fmt.Errorf("failing inner unit returned %v", err)
		}
		return scoped.Run(ctx, func(ctx context.Context) error { return add(ctx, 100) })
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := value(); n != 101 {
		t.Fatalf("counter %d, want 101 (the failed inner unit's +10 undone alone)", n)
	}
	err = scoped.Run(ctx, func(ctx context.Context) error {
		if err := scoped.Run(ctx, func(ctx context.Context) error { return add(ctx, 1000) }); err != nil {
			return err
		}
		return errOuter
	})
	if !errors.Is(err, errOuter) {
		t.Fatalf("Run: %v", err)
	}
	if n := value(); n != 101 {
		t.Fatalf("counter %d, want 101 (the outer rollback undoes the inner unit)", n)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Fatalf("%d connections still acquired", n)
	}
}
