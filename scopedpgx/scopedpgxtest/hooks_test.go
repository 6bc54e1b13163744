package scopedpgxtest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
)

// Under Isolate, unit hooks fire exactly as in production: units three
// deep, each level failing in turn, run the OnCommit hooks of exactly the
// rows the test then sees saved (a hook reads its row through the test's
// connection), and the OnRollback hooks of exactly the rows undone.
func TestIsolateRunsUnitHooksAsInProduction(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_hooks")
	db := Isolate(t, pool)
	txs := db.NewTx()
	errFail := errors.New("fail")
	var committed, rolledBack []int
	level := func(ctx context.Context, id int, fail bool, inner func(context.Context) error) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		if err := insert(ctx, tx, table, id); err != nil {
			return err
		}
		_ = scoped.OnCommit(ctx, func(ctx context.Context) {
			if !slices.Contains(ids(t, db, table), id) {
				t.Errorf("OnCommit hook of %d: the row is not saved", id)
			}
			committed = append(committed, id)
		})
		_ = scoped.OnRollback(ctx, func(context.Context) { rolledBack = append(rolledBack, id) })
		if inner != nil {
			_ = scoped.Run(ctx, inner)
		}
		if fail {
			return errFail
		}
		return nil
	}
	for u := range 4 { // u fails at level u (0: none)
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			return level(ctx, u*10+1, u == 1, func(ctx context.Context) error {
				return level(ctx, u*10+2, u == 2, func(ctx context.Context) error {
					return level(ctx, u*10+3, u == 3, nil)
				})
			})
		})
		if err != nil && !errors.Is(err, errFail) {
			t.Fatal(err)
		}
	}
	saved := ids(t, db, table)
	if want := []int{1, 2, 3, 21, 31, 32}; !slices.Equal(saved, want) {
		t.Errorf("saved %v, want %v", saved, want)
	}
	slices.Sort(committed)
	if !slices.Equal(committed, saved) {
		t.Errorf("OnCommit hooks ran for %v, saved %v", committed, saved)
	}
	slices.Sort(rolledBack)
	if want := []int{11, 12, 13, 22, 23, 33}; !slices.Equal(rolledBack, want) {
		t.Errorf("OnRollback hooks ran for %v, want %v", rolledBack, want)
	}
}
