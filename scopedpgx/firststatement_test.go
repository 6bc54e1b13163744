package scopedpgx

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A child unit that is the transaction's first user and fails on its
// first statement (BEGIN and SAVEPOINT ride with it) is undone alone: the
// parent goes on and commits its own later work; a root unit whose first
// statement fails commits nothing and says why.
func TestFirstStatementFails(t *testing.T) {
	pool := newPool(t, 4)
	table := newTable(t, pool, "review2_first")
	txs := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
	ctx := dbtest.Ctx(t)
	if _, err := pool.Exec(ctx, "INSERT INTO "+table+" (id) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	exec := func(ctx context.Context, id int) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id)
		return err
	}
	err := scoped.Run(ctx, func(ctx context.Context) error {
		cerr := scoped.Run(ctx, func(ctx context.Context) error { return exec(ctx, 1) }) // duplicate key
		var pgErr *pgconn.PgError
		if !errors.As(cerr, &pgErr) || pgErr.Code != "23505" {
			t.Errorf("child: %v, want the unique violation", cerr)
		}
		return exec(ctx, 2)
	})
	if err != nil {
		t.Fatalf("parent: %v", err)
	}
	if got := ids(t, pool, table); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("rows %v, want [1 2]", got)
	}
	err = scoped.Run(ctx, func(ctx context.Context) error {
		_ = exec(ctx, 1)    // fails, error dropped
		return exec(ctx, 3) // must fail too: the transaction is aborted
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25P02" {
		t.Errorf("second statement after a failed first: %v, want 25P02", err)
	}
	if got := ids(t, pool, table); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("rows %v, want [1 2]", got)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired", n)
	}
}
