package scopedtest_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
	"github.com/go-scoped/scoped/scopedtest"
)

var errChild = errors.New("child unit of work failed")

// A nesting case: a root unit of work (scoped.Run) that inserts 1, runs a
// child unit (scoped.Run inside it) that inserts 2, and ends as told. The
// ids left in the table, and whether the root's Run reported an error,
// must be the same under IsolatedDB as on the real pool.
type nestingCase struct {
	name        string
	childFails  bool // the child returns an error (rolled back to its savepoint)
	childBadSQL bool // a statement of the child fails
	rootFails   bool // the root returns an error after the child
	rootBadSQL  bool // a statement of the root fails before the child, and the root goes on
	twoChildren bool // a second child (inserting 3) commits after the first
}

var nestingCases = []nestingCase{
	{name: "both commit"},
	{name: "child rolls back", childFails: true},
	{name: "child statement fails", childBadSQL: true},
	{name: "root rolls back a committed child", rootFails: true},
	{name: "root statement failed", rootBadSQL: true},
	{name: "two children, first rolls back", childFails: true, twoChildren: true},
}

// runNesting runs c on db and returns the ids committed, as a fresh
// statement on db sees them, and whether the root reported an error.
func runNesting(t *testing.T, db *sql.DB, s dbtest.Server, table string, c nestingCase) (ids []int64, rootErr bool) {
	t.Helper()
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	insert := func(ctx context.Context, id int64) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.InsertID(table), id)
		return err
	}
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		if err := insert(ctx, 1); err != nil {
			return err
		}
		if c.rootBadSQL {
			_ = insert(ctx, 1) // duplicate key: fails
		}
		_ = scoped.Run(ctx, func(ctx context.Context) error {
			if err := insert(ctx, 2); err != nil {
				return err
			}
			if c.childBadSQL {
				if err := insert(ctx, 2); err != nil {
					return err
				}
			}
			if c.childFails {
				return errChild
			}
			return nil
		})
		if c.twoChildren {
			if err := scoped.Run(ctx, func(ctx context.Context) error { return insert(ctx, 3) }); err != nil {
				return err
			}
		}
		if c.rootFails {
			return errors.New("root failed")
		}
		return nil
	})
	return dbtest.IDs(t, db, table), err != nil
}

// Issue 12: every nesting case gives the same rows (and the same success
// or failure) under IsolatedDB as on the real pool.
func TestIsolatedDBNestsAsTheRealPool(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		plain := plainDB(t, s)
		for _, c := range nestingCases {
			t.Run(c.name, func(t *testing.T) {
				realTable := dbtest.CreateIDTable(t, plain, "scopedtest_nest_real")
				wantIDs, wantErr := runNesting(t, plain, s, realTable, c)

				isoTable := dbtest.CreateIDTable(t, plain, "scopedtest_nest_iso")
				var gotIDs []int64
				var gotErr bool
				t.Run("isolated", func(t *testing.T) {
					db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
					gotIDs, gotErr = runNesting(t, db, s, isoTable, c)
				})
				t.Logf("real pool: ids %v, root error %v; IsolatedDB: ids %v, root error %v", wantIDs, wantErr, gotIDs, gotErr)
				if !slices.Equal(gotIDs, wantIDs) || gotErr != wantErr {
					t.Errorf("IsolatedDB: ids %v, root error %v; real pool: ids %v, root error %v",
						gotIDs, gotErr, wantIDs, wantErr)
				}
				if left := dbtest.IDs(t, plain, isoTable); len(left) != 0 {
					t.Errorf("IsolatedDB left %v behind", left)
				}
			})
		}
	})
}

// The one documented difference: an independent unit of work (its own
// transaction on a real pool) commits into the enclosing transaction
// under IsolatedDB, since the test has one connection, so the enclosing
// rollback undoes it. Its own rollback and commit still behave.
func TestIsolatedDBIndependentUnitJoinsTheOneConnection(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		plain := plainDB(t, s)
		run := func(db *sql.DB, table string) []int64 {
			txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
			_ = scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, s.InsertID(table), 1); err != nil {
					return err
				}
				err = scoped.Run(ctx, func(ctx context.Context) error {
					tx, err := txs.Current(ctx)
					if err != nil {
						return err
					}
					_, err = tx.ExecContext(ctx, s.InsertID(table), 2)
					return err
				}, scoped.Independent())
				if err != nil {
					t.Errorf("independent unit: %v", err)
				}
				return errors.New("the caller rolls back")
			})
			return dbtest.IDs(t, db, table)
		}
		if got := run(plain, dbtest.CreateIDTable(t, plain, "scopedtest_indep_real")); !slices.Equal(got, []int64{2}) {
			t.Errorf("real pool: ids %v, want [2] (the independent unit survives)", got)
		}
		table := dbtest.CreateIDTable(t, plain, "scopedtest_indep_iso")
		t.Run("isolated", func(t *testing.T) {
			db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
			if got := run(db, table); len(got) != 0 {
				t.Errorf("IsolatedDB: ids %v, want none (documented: one connection, one transaction)", got)
			}
		})
	})
}
