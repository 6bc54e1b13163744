package scopedtest_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
	"github.com/go-scoped/scoped/scopedtest"
)

// Under IsolatedDB, unit hooks fire exactly as in production (the trap
// of Django's on_commit under TestCase): units three deep, each level
// failing in turn, run the OnCommit hooks of exactly the rows the test
// then sees saved, and the OnRollback hooks of exactly the rows undone;
// a hook reads the committed row through the isolated database.
func TestIsolatedDBRunsUnitHooksAsInProduction(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		table := dbtest.CreateIDTable(t, plainDB(t, s), "scopedtest_hooks")
		db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
		txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
		errFail := errors.New("fail")
		var committed, rolledBack []int64
		level := func(ctx context.Context, id int64, fail bool, inner func(context.Context) error) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.InsertID(table), id); err != nil {
				return err
			}
			_ = scoped.OnCommit(ctx, func(ctx context.Context) {
				if !slices.Contains(dbtest.IDs(t, db, table), id) {
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
		for u := range int64(4) { // u fails at level u (0: none)
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
		saved := dbtest.IDs(t, db, table)
		if want := []int64{1, 2, 3, 21, 31, 32}; !slices.Equal(saved, want) {
			t.Errorf("saved %v, want %v", saved, want)
		}
		slices.Sort(committed)
		if !slices.Equal(committed, saved) {
			t.Errorf("OnCommit hooks ran for %v, saved %v", committed, saved)
		}
		slices.Sort(rolledBack)
		if want := []int64{11, 12, 13, 22, 23, 33}; !slices.Equal(rolledBack, want) {
			t.Errorf("OnRollback hooks ran for %v, want %v", rolledBack, want)
		}
	})
}
