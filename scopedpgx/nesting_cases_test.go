package scopedpgx

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
)

// Nested units of work on scopedpgx's transactions, whose BEGIN
// rides with the first statement.

func reviewInsert(ctx context.Context, txs *scoped.ScopedSession[pgx.Tx], table string, id int) error {
	tx, err := txs.Current(ctx)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id)
	return err
}

// A grandchild, three levels down, asks with WithRetry for the root to
// run again; the middle unit handles its error and returns nil. The root
// (WithRetry) runs the whole unit again anyway; only the second
// attempt's rows are saved. The grandchild's statement is the
// transaction's first: BEGIN, SAVEPOINT, SAVEPOINT and the statement.
func TestDeepRetryAskedByAGrandchild(t *testing.T) {
	pool := newPool(t, 1)
	table := newTable(t, pool, "pgx_rv_retry")
	txs := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
	attempts := 0
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		attempts++
		a := attempts
		if err := scoped.Run(ctx, func(ctx context.Context) error {
			_ = scoped.Run(ctx, func(ctx context.Context) error {
				if err := reviewInsert(ctx, txs, table, 10*a+1); err != nil {
					return err
				}
				if a == 1 {
					tx, err := txs.Current(ctx)
					if err != nil {
						return err
					}
					_, err = tx.Exec(ctx, "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
					return err
				}
				return nil
			}, scoped.WithRetry(2, Retryable))
			return reviewInsert(ctx, txs, table, 10*a+2) // the middle goes on
		}); err != nil {
			return err
		}
		return reviewInsert(ctx, txs, table, 10*a+3)
	}, scoped.WithRetry(3, Retryable))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, pool, table); attempts != 2 || !slices.Equal(got, []int{21, 22, 23}) {
		t.Fatalf("%d attempts, rows %v; want 2 and [21 22 23]", attempts, got)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Fatalf("%d connections acquired after the unit", n)
	}
}

// Two children at once on a transaction not begun yet (the root never
// asked for it): the root's transaction is made once, one child gets
// ErrNestedBusy, the other's row and the root's are saved, nothing stays
// acquired. Then an independent unit inside a child that fails inside a
// root that fails: only the independent row is saved.
func TestFanOutOnALazyTransactionAndIndependent(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgx_rv_fan")
	txs := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
	errs := make([]error, 2)
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		open := make(chan struct{})
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs[0] = scoped.Run(ctx, func(ctx context.Context) error {
				err := reviewInsert(ctx, txs, table, 1)
				close(open)
				<-done
				return err
			})
		}()
		go func() {
			defer wg.Done()
			defer close(done)
			<-open
			errs[1] = scoped.Run(ctx, func(ctx context.Context) error { return reviewInsert(ctx, txs, table, 2) })
		}()
		wg.Wait()
		return reviewInsert(ctx, txs, table, 3)
	})
	if err != nil || errs[0] != nil || !errors.Is(errs[1], scoped.ErrNestedBusy) {
		t.Fatalf("root %v, children %v / %v", err, errs[0], errs[1])
	}
	if got := ids(t, pool, table); !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("rows %v, want [1 3]", got)
	}
	errFail := errors.New("fail")
	var indep error
	err = scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		if err := reviewInsert(ctx, txs, table, 4); err != nil {
			return err
		}
		_ = scoped.Run(ctx, func(ctx context.Context) error {
			if err := reviewInsert(ctx, txs, table, 5); err != nil {
				return err
			}
			indep = scoped.Run(ctx, func(ctx context.Context) error {
				return scoped.Run(ctx, func(ctx context.Context) error { return reviewInsert(ctx, txs, table, 6) })
			}, scoped.Independent())
			return errFail
		})
		return errFail
	})
	if !errors.Is(err, errFail) || indep != nil {
		t.Fatalf("root %v, independent %v", err, indep)
	}
	if got := ids(t, pool, table); !slices.Equal(got, []int{1, 3, 6}) {
		t.Fatalf("rows %v, want [1 3 6]", got)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Fatalf("%d connections acquired after the units", n)
	}
}
