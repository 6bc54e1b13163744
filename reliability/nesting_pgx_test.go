package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
)

// The same nesting through scopedpgx on a pgxpool of one connection: a
// nested Run is a savepoint of the caller's pgx transaction, undone alone
// when it fails, undone with the caller when the caller fails.
func TestNestedRunJoinsTheCallersPgxTransaction(t *testing.T) {
	s := dbtest.Postgres(t)
	p := openPool(t, s, 1)
	table := createCounter(t, p, "scoped_nestpgx")
	cfg, err := pgxpool.ParseConfig(s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(dbtest.Ctx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	txs := scopedpgx.NewTx(pool, pgx.TxOptions{})
	add := func(ctx context.Context, d int) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE "+table+" SET n = n + $1 WHERE id = 1", d)
		return err
	}
	errInner, errOuter := errors.New("inner fails"), errors.New("outer fails")
	ctx := dbtest.Ctx(t)
	err = scoped.Run(ctx, func(ctx context.Context) error {
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
	if n := counterValue(t, p, table, 1); n != 101 {
		t.Fatalf("counter %d, want 101", n)
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
	if n := counterValue(t, p, table, 1); n != 101 {
		t.Fatalf("counter %d, want 101 (the outer rollback undoes the inner unit)", n)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Fatalf("%d pgx connections still acquired", n)
	}
}
