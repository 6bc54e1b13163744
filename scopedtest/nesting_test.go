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

// sqlNestingDB is db with a fresh session of scopedsql.Tx, for
// dbtest.CompareNesting.
func sqlNestingDB(db *sql.DB, s dbtest.Server) dbtest.NestingDB {
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	return dbtest.NestingDB{
		Insert: func(ctx context.Context, table string, id int64) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, s.InsertID(table), id)
			return err
		},
		IDs: func(t testing.TB, table string) []int64 { return dbtest.IDs(t, db, table) },
	}
}

// Issue 12: every nesting case gives the same rows (and the same success
// or failure) under IsolatedDB as on the real pool.
func TestIsolatedDBNestsAsTheRealPool(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		plain := plainDB(t, s)
		dbtest.CompareNesting(t, dbtest.Nesting{
			Isolated:    "IsolatedDB",
			TablePrefix: "scopedtest_nest",
			NewTable: func(t *testing.T, prefix string) string {
				return dbtest.CreateIDTable(t, plain, prefix)
			},
			Real: func(*testing.T) dbtest.NestingDB { return sqlNestingDB(plain, s) },
			Isolate: func(t *testing.T) dbtest.NestingDB {
				return sqlNestingDB(scopedtest.IsolatedDB(t, s.Driver, s.DSN), s)
			},
		})
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
