package adapters_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// item is a row of the tests' table, named per test by gorm's Table.
type item struct{ ID int }

// openGorm opens gorm on the PostgreSQL test server, with a table of its
// own (dropped when t ends), and closes it when t ends. gorm's logger is
// silent: the failures the tests provoke are not errors of the suite.
func openGorm(t *testing.T) (*gorm.DB, string) {
	t.Helper()
	db, err := gorm.Open(postgres.Open(dbtest.Postgres(t).DSN), &gorm.Config{Logger: logger.Default.LogMode(logger.Silent)})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db, dbtest.CreateIDTable(t, sqlDB, "gorm_nest")
}

// ids returns the ids in table, ascending, as committed.
func ids(t *testing.T, db *gorm.DB, table string) []int {
	t.Helper()
	var got []int
	if err := db.WithContext(dbtest.Ctx(t)).Table(table).Order("id").Pluck("id", &got).Error; err != nil {
		t.Fatal(err)
	}
	return got
}

var errChild = errors.New("the child unit failed")

// A parent unit writes, then calls a child unit that writes and fails (by
// returning an error, or because its statement failed, which aborts the
// transaction on PostgreSQL) or succeeds; the parent handles the child's
// error and commits. With gormTxs's WithNesting only the work of the
// units that succeeded is saved. Without it (the teardown options alone)
// the child shares the parent's transaction as it is, and the parent's
// commit saves the failed child's row.
func TestGormNestedUnitOnPostgres(t *testing.T) {
	db, table := openGorm(t)
	insert := func(ctx context.Context, txs *scoped.ScopedSession[*gorm.DB], id int) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		return tx.Table(table).Create(&item{ID: id}).Error
	}
	for _, tc := range []struct {
		name     string
		nesting  bool
		child    func(ctx context.Context, txs *scoped.ScopedSession[*gorm.DB]) error
		childErr bool
		want     []int
	}{
		{"child fails", true, func(ctx context.Context, txs *scoped.ScopedSession[*gorm.DB]) error {
			if err := insert(ctx, txs, 2); err != nil {
				return err
			}
			return errChild
		}, true, []int{1}},
		{"child's statement fails", true, func(ctx context.Context, txs *scoped.ScopedSession[*gorm.DB]) error {
			if err := insert(ctx, txs, 2); err != nil {
				return err
			}
			return insert(ctx, txs, 1) // a duplicate key: the transaction is aborted
		}, true, []int{1}},
		{"child succeeds", true, func(ctx context.Context, txs *scoped.ScopedSession[*gorm.DB]) error {
			return insert(ctx, txs, 2)
		}, false, []int{1, 2}},
		{"child fails, without WithNesting", false, func(ctx context.Context, txs *scoped.ScopedSession[*gorm.DB]) error {
			if err := insert(ctx, txs, 2); err != nil {
				return err
			}
			return errChild
		}, true, []int{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(func() {
				if err := db.Exec("DELETE FROM " + table).Error; err != nil {
					t.Error(err)
				}
			})
			txs := gormTxs(db)
			if !tc.nesting {
				txs = scoped.New(
					func(ctx context.Context) (*gorm.DB, error) {
						tx := db.WithContext(ctx).Begin()
						return tx, tx.Error
					},
					scoped.WithCommit(func(_ context.Context, tx *gorm.DB) error { return tx.Commit().Error }),
					scoped.WithRollback(func(_ context.Context, tx *gorm.DB) error { return tx.Rollback().Error }),
				)
			}
			var childErr error
			err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
				if err := insert(ctx, txs, 1); err != nil {
					return err
				}
				childErr = scoped.Run(ctx, func(ctx context.Context) error { return tc.child(ctx, txs) })
				return nil // the parent handles the child's error and goes on
			})
			if err != nil {
				t.Fatalf("the parent's commit: %v", err)
			}
			if (childErr != nil) != tc.childErr {
				t.Errorf("the child returned %v; want an error: %v", childErr, tc.childErr)
			}
			if got := ids(t, db, table); !slices.Equal(got, tc.want) {
				t.Errorf("committed ids %v, want %v", got, tc.want)
			}
		})
	}
}

// A savepoint the server refuses (the parent's transaction is aborted by a
// statement it handled) fails the child's Current, and the parent cannot
// commit: nothing is saved. gorm's own SavePoint would report it done.
func TestGormRefusedSavepointOnPostgres(t *testing.T) {
	db, table := openGorm(t)
	var teardown testkit.Errors
	txs := gormTxs(db, scoped.WithTeardownErrorHook(teardown.Hook))
	var currentErr error
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		if err := tx.Table(table).Create(&item{ID: 1}).Error; err != nil {
			return err
		}
		if err := tx.Exec("SELECT 1/0").Error; err == nil {
			t.Error("SELECT 1/0 succeeded")
		}
		_ = scoped.Run(ctx, func(ctx context.Context) error {
			_, currentErr = txs.Current(ctx)
			return currentErr
		})
		return nil
	})
	if currentErr == nil || !strings.Contains(currentErr.Error(), "25P02") {
		t.Errorf("the child's Current: %v, want the refused savepoint (25P02)", currentErr)
	}
	if !errors.Is(err, scoped.ErrNotCommitted) {
		t.Errorf("the parent's commit: %v, want ErrNotCommitted", err)
	}
	if got := ids(t, db, table); len(got) != 0 {
		t.Errorf("committed ids %v, want none", got)
	}
	if errs := teardown.List(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "25P02") {
		t.Errorf("teardown errors %v, want the parent's rollback for the refused savepoint", errs)
	}
}
