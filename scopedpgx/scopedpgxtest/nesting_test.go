package scopedpgxtest

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
)

var errChild = errors.New("child unit of work failed")

// pgxNestingDB is txs, whose transactions q reads after them, for
// dbtest.CompareNesting; pgx also makes savepoints by hand
// (pgx.BeginFunc on the unit's transaction).
func pgxNestingDB(txs *scoped.ScopedSession[pgx.Tx], q querier) dbtest.NestingDB {
	return dbtest.NestingDB{
		Insert: func(ctx context.Context, table string, id int64) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			return insert(ctx, tx, table, int(id))
		},
		IDs: func(t testing.TB, table string) []int64 {
			t.Helper()
			var out []int64
			for _, id := range ids(t, q, table) {
				out = append(out, int64(id))
			}
			return out
		},
		HandSavepoint: func(ctx context.Context, table string, id int64) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			_ = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
				if err := insert(ctx, sp, table, int(id)); err != nil {
					return err
				}
				return errChild
			})
			return nil
		},
	}
}

// Every nesting case gives the same rows and the same end, down to
// pgx.ErrTxCommitRollback, under Isolate as on the real pool with
// scopedpgx.NewTx.
func TestIsolatedNestsAsTheRealPool(t *testing.T) {
	pool := newPool(t, 4)
	dbtest.CompareNesting(t, dbtest.Nesting{
		Isolated:    "Isolate",
		TablePrefix: "pgxtest_nest",
		NewTable: func(t *testing.T, prefix string) string {
			return newTable(t, pool, prefix)
		},
		Real: func(*testing.T) dbtest.NestingDB {
			return pgxNestingDB(scopedpgx.NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil)), pool)
		},
		Isolate: func(t *testing.T) dbtest.NestingDB {
			db := Isolate(t, pool)
			return pgxNestingDB(db.NewTx(scoped.WithTeardownErrorHook(nil)), db)
		},
		ErrorKind: func(err error) string {
			if errors.Is(err, pgx.ErrTxCommitRollback) {
				return "pgx.ErrTxCommitRollback"
			}
			return ""
		},
	})
}
