package scopedpgx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
)

// Issue 20 item 4: a child unit of work whose statement fails before the
// transaction has written anything (so before its id is known) is rolled
// back to its savepoint, and the caller goes on and commits. The
// savepoint's ROLLBACK TO runs in an aborted transaction, where
// PostgreSQL prepares nothing else: it must travel alone. At every
// isolation level, whatever the caller did before the child.
func TestChildFailingBeforeAnyWriteIsUndone(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgx_childabort")
	before := []struct {
		name string
		sql  string
	}{
		{"select", "SELECT 1"},
		{"nothing", ""},
		{"insert of no rows", "INSERT INTO " + table + " (id) SELECT 1 WHERE false"},
	}
	id := 0
	for _, iso := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.RepeatableRead, pgx.Serializable} {
		for _, b := range before {
			id++
			t.Run(fmt.Sprintf("%s/%s", iso, b.name), func(t *testing.T) {
				var hooked []error
				txs := NewTx(pool, pgx.TxOptions{IsoLevel: iso}, scoped.WithTeardownErrorHook(func(_ context.Context, err error) {
					hooked = append(hooked, err)
				}))
				err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
					tx, err := txs.Current(ctx)
					if err != nil {
						return err
					}
					if b.sql != "" {
						if _, err := tx.Exec(ctx, b.sql); err != nil {
							return fmt.Errorf("before the child: %w", err)
						}
					}
					cerr := scoped.Run(ctx, func(ctx context.Context) error {
						tx, err := txs.Current(ctx)
						if err != nil {
							return err
						}
						var n int
						return tx.QueryRow(ctx, "SELECT 1/0").Scan(&n)
					})
					var pgErr *pgconn.PgError
					if !errors.As(cerr, &pgErr) || pgErr.Code != "22012" {
						return fmt.Errorf("child: %v, want division by zero (22012)", cerr)
					}
					var pre pgx.ErrPreprocessingBatch
					if errors.As(cerr, &pre) || len(unwrapAll(cerr)) > 1 {
						return fmt.Errorf("child: %v, want the statement's error alone", cerr)
					}
					var n int
					if err := tx.QueryRow(ctx, "SELECT 42").Scan(&n); err != nil || n != 42 {
						return fmt.Errorf("caller after the child: %d, %w", n, err)
					}
					_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id)
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Contains(ids(t, pool, table), id) {
					t.Errorf("the caller's row %d was not committed", id)
				}
				if len(hooked) != 0 {
					t.Errorf("teardown errors: %v", hooked)
				}
			})
		}
	}
}

// unwrapAll returns the errors err joins, or err alone.
func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// The same under concurrency: a child unit of work at REPEATABLE READ
// that meets a serialization failure (40001) as its first write returns
// that error alone, Retryable, with no teardown error beside it, and the
// caller's transaction goes on.
func TestChildSerializationFailureIsReportedAlone(t *testing.T) {
	pool := newPool(t, 2)
	admin := newPool(t, 1)
	table := newTable(t, admin, "pgx_child40001")
	if _, err := admin.Exec(context.Background(), "INSERT INTO "+table+" (id) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var hooked []error
	txs := NewTx(pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, scoped.WithTeardownErrorHook(func(_ context.Context, err error) {
		hooked = append(hooked, err)
	}))
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
			return err // the snapshot is taken
		}
		if _, err := admin.Exec(ctx, "UPDATE "+table+" SET n = n + 1 WHERE id = 1"); err != nil {
			return err
		}
		cerr := scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "UPDATE "+table+" SET n = n + 10 WHERE id = 1")
			return err
		})
		var pre pgx.ErrPreprocessingBatch
		if !Retryable(cerr) || errors.As(cerr, &pre) || len(unwrapAll(cerr)) > 1 {
			return fmt.Errorf("child: %v, want the serialization failure alone", cerr)
		}
		return tx.QueryRow(ctx, "SELECT 42").Scan(&n)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(hooked) != 0 {
		t.Errorf("teardown errors: %v", hooked)
	}
}

// Issue 20 item 3 on pgx: a child that handles its own failed statement
// and returns nil cannot be released (PostgreSQL refuses RELEASE in an
// aborted transaction): it is rolled back to its savepoint, reports that
// nothing of it was saved, and the caller goes on and commits its work.
func TestChildWhoseReleaseFailsIsRolledBack(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgx_relfail")
	txs := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
	var childErr error
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES (1)"); err != nil {
			return err
		}
		childErr = scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES (2)"); err != nil {
				return err
			}
			_, _ = tx.Exec(ctx, "SELECT 1/0") // fails; the child handles it
			return nil
		})
		_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES (3)")
		return err
	})
	if err != nil {
		t.Fatalf("caller after a child whose release failed: %v", err)
	}
	if !errors.Is(childErr, scoped.ErrNotCommitted) {
		t.Fatalf("child: %v, want ErrNotCommitted", childErr)
	}
	if got := ids(t, pool, table); !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("rows %v, want [1 3]: the caller's work, not the child's", got)
	}
}
