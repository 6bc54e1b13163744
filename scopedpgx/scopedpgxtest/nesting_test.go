package scopedpgxtest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
)

var errChild = errors.New("child unit of work failed")

// A nesting case: a root unit of work (scoped.Run) that inserts 1, runs a
// child unit (scoped.Run inside it) that inserts 2, and ends as told. The
// ids left in the table, and how the root's Run ended, must be the same
// under Isolate as on the real pool.
type nestingCase struct {
	name          string
	childFails    bool // the child returns an error (rolled back to its savepoint)
	childBadSQL   bool // a statement of the child fails
	rootFails     bool // the root returns an error after the child
	rootBadSQL    bool // a statement of the root fails before the child, and the root goes on
	twoChildren   bool // a second child (inserting 3) commits after the first
	grandchild    bool // the child runs a grandchild (inserting 4) that fails
	handSavepoint bool // the root also runs pgx.BeginFunc (inserting 5) on its transaction, which fails
}

var nestingCases = []nestingCase{
	{name: "both commit"},
	{name: "child rolls back", childFails: true},
	{name: "child statement fails", childBadSQL: true},
	{name: "root rolls back a committed child", rootFails: true},
	{name: "root statement failed", rootBadSQL: true},
	{name: "two children, first rolls back", childFails: true, twoChildren: true},
	{name: "grandchild rolls back, child commits", grandchild: true},
	{name: "grandchild rolls back, child rolls back", grandchild: true, childFails: true},
	{name: "a savepoint by hand rolls back", handSavepoint: true},
}

// outcome is what a nesting case ends with.
type outcome struct {
	ids            []int
	rootErr        bool
	commitRollback bool // the root's error is pgx.ErrTxCommitRollback
}

// runNesting runs c with txs and returns the ids committed, as q sees
// them afterwards, and how the root ended.
func runNesting(t *testing.T, txs *scoped.ScopedSession[pgx.Tx], q querier, table string, c nestingCase) outcome {
	t.Helper()
	add := func(ctx context.Context, id int) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		return insert(ctx, tx, table, id)
	}
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		if err := add(ctx, 1); err != nil {
			return err
		}
		if c.rootBadSQL {
			_ = add(ctx, 1) // duplicate key: fails
		}
		_ = scoped.Run(ctx, func(ctx context.Context) error {
			if err := add(ctx, 2); err != nil {
				return err
			}
			if c.childBadSQL {
				if err := add(ctx, 2); err != nil {
					return err
				}
			}
			if c.grandchild {
				_ = scoped.Run(ctx, func(ctx context.Context) error {
					if err := add(ctx, 4); err != nil {
						return err
					}
					return errChild
				})
			}
			if c.childFails {
				return errChild
			}
			return nil
		})
		if c.twoChildren {
			if err := scoped.Run(ctx, func(ctx context.Context) error { return add(ctx, 3) }); err != nil {
				return err
			}
		}
		if c.handSavepoint {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			_ = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
				if err := insert(ctx, sp, table, 5); err != nil {
					return err
				}
				return errChild
			})
		}
		if c.rootFails {
			return errors.New("root failed")
		}
		return nil
	})
	return outcome{ids(t, q, table), err != nil, errors.Is(err, pgx.ErrTxCommitRollback)}
}

// Every nesting case gives the same rows and the same end under Isolate
// as on the real pool with scopedpgx.NewTx.
func TestIsolatedNestsAsTheRealPool(t *testing.T) {
	pool := newPool(t, 4)
	for _, c := range nestingCases {
		t.Run(c.name, func(t *testing.T) {
			realTable := newTable(t, pool, "pgxtest_nest_real")
			want := runNesting(t, scopedpgx.NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil)), pool, realTable, c)

			isoTable := newTable(t, pool, "pgxtest_nest_iso")
			var got outcome
			t.Run("isolated", func(t *testing.T) {
				db := Isolate(t, pool)
				got = runNesting(t, db.NewTx(scoped.WithTeardownErrorHook(nil)), db, isoTable, c)
			})
			t.Logf("real pool: %+v; isolated: %+v", want, got)
			if !slices.Equal(got.ids, want.ids) || got.rootErr != want.rootErr || got.commitRollback != want.commitRollback {
				t.Errorf("isolated: %+v; real pool: %+v", got, want)
			}
			if left := ids(t, pool, isoTable); len(left) != 0 {
				t.Errorf("the isolated test left %v behind", left)
			}
		})
	}
}
