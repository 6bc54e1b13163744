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

// A child unit whose statement fails and which handles the error and
// returns nil: its RELEASE is refused (25P02), it is rolled back to its
// savepoint, and the caller goes on and commits its own work. Under
// Isolate exactly as on the real pool (spec §6: child scopes have the
// semantics they have in production).
func TestChildSwallowsFailedStatementAsInProduction(t *testing.T) {
	pool := newPool(t, 4)
	run := func(t *testing.T, txs *scoped.ScopedSession[pgx.Tx], q querier, table string) ([]int, error, error) {
		var childErr error
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if err := insert(ctx, tx, table, 1); err != nil {
				return err
			}
			childErr = scoped.Run(ctx, func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				if err := insert(ctx, tx, table, 2); err != nil {
					return err
				}
				_ = insert(ctx, tx, table, 2) // duplicate key; handled
				return nil
			})
			tx, err = txs.Current(ctx)
			if err != nil {
				return err
			}
			return insert(ctx, tx, table, 3)
		})
		return ids(t, q, table), err, childErr
	}
	realTable := newTable(t, pool, "pgxtest_rv_swallow")
	realIDs, realErr, realChild := run(t, scopedpgx.NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil)), pool, realTable)
	if realErr != nil || !slices.Equal(realIDs, []int{1, 3}) || !errors.Is(realChild, scoped.ErrNotCommitted) {
		t.Fatalf("real pool: rows %v, root %v, child %v; want [1 3], nil, ErrNotCommitted", realIDs, realErr, realChild)
	}
	isoTable := newTable(t, pool, "pgxtest_rv_swallow_iso")
	db := Isolate(t, pool)
	isoIDs, isoErr, isoChild := run(t, db.NewTx(scoped.WithTeardownErrorHook(nil)), db, isoTable)
	if isoErr != nil || !slices.Equal(isoIDs, realIDs) || !errors.Is(isoChild, scoped.ErrNotCommitted) {
		t.Fatalf("Isolate: rows %v, root %v, child %v; the real pool: rows %v, root nil, child %v", isoIDs, isoErr, isoChild, realIDs, realChild)
	}
}
