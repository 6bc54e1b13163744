package reliability_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// Edges of nesting where a savepoint operation fails: the unit's outcome
// must still say what was saved.

// A unit with two transactions whose first committed and whose second
// failed with a serialization failure at COMMIT (ErrPartiallyCommitted) is
// not run again by WithRetry: the first database would get the work twice.
func TestRetryNeverRerunsAPartlyCommittedUnit(t *testing.T) {
	s := dbtest.Postgres(t)
	p := openPool(t, s, 2)
	counter := createCounter(t, p, "scoped_partial")
	failing := dbtest.CreateCommitFailureTable(t, p.admin, "scoped_partial_fail")
	first := scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithTeardownErrorHook(nil))
	second := scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithTeardownErrorHook(nil))
	attempts := 0
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		attempts++
		tx, err := first.Current(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE "+counter+" SET n = n + 1 WHERE id = 1"); err != nil {
			return err
		}
		tx2, err := second.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx2.ExecContext(ctx, s.InsertID(failing), -1) // its COMMIT fails with 40001
		return err
	}, scoped.WithRetry(3, scopedsql.Retryable))
	if !errors.Is(err, scoped.ErrPartiallyCommitted) || !scopedsql.Retryable(err) {
		t.Fatalf("Run: %v, want ErrPartiallyCommitted with the serialization failure", err)
	}
	if n := counterValue(t, p, counter, 1); attempts != 1 || n != 1 {
		t.Fatalf("%d attempts, counter %d; want the unit run once and its first commit counted once", attempts, n)
	}
}

// A child unit whose RELEASE fails (PostgreSQL refuses it with 25P02 after
// a statement of the child failed and the child went on) is rolled back to
// its savepoint: the child reports that nothing of it was saved, and its
// caller goes on and commits its own work.
func TestFailedReleaseRollsTheChildBack(t *testing.T) {
	s := dbtest.Postgres(t)
	p := openPool(t, s, 1)
	table := createCounter(t, p, "scoped_relfail")
	txs := scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithTeardownErrorHook(nil))
	var childErr error
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE "+table+" SET n = 5 WHERE id = 1"); err != nil {
			return err
		}
		childErr = scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "UPDATE "+table+" SET n = 9 WHERE id = 2"); err != nil {
				return err
			}
			_, _ = tx.ExecContext(ctx, "SELECT 1/0") // fails; the child handles it and returns nil
			return nil
		})
		_, err = tx.ExecContext(ctx, "UPDATE "+table+" SET n = n + 1 WHERE id = 1")
		return err
	})
	if err != nil {
		t.Fatalf("caller after a child whose release failed: %v", err)
	}
	if !errors.Is(childErr, scoped.ErrNotCommitted) {
		t.Fatalf("child: %v, want ErrNotCommitted", childErr)
	}
	if a, b := counterValue(t, p, table, 1), counterValue(t, p, table, 2); a != 6 || b != 0 {
		t.Fatalf("rows %d and %d, want 6 (the caller's work) and 0 (the child's undone)", a, b)
	}
}

// A child unit whose savepoint is gone (the transaction ended under it)
// poisons the enclosing transaction: the caller that handled the child's
// error and returned nil gets ErrNotCommitted, not a nil for work that is
// not there. PostgreSQL: the child ends the transaction by hand.
func TestLostSavepointPoisonsTheParentOnPostgreSQL(t *testing.T) {
	s := dbtest.Postgres(t)
	p := openPool(t, s, 1)
	table := createCounter(t, p, "scoped_spgone")
	txs := scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithTeardownErrorHook(nil))
	errChild := errors.New("child failed")
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE "+table+" SET n = 5 WHERE id = 1"); err != nil {
			return err
		}
		if err := scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "ROLLBACK"); err != nil {
				return err
			}
			return errChild
		}); !errors.Is(err, errChild) {
			return err
		}
		return nil // the caller handles the child's error
	})
	if !errors.Is(err, scoped.ErrNotCommitted) {
		t.Fatalf("Run: %v, want ErrNotCommitted", err)
	}
	if n := counterValue(t, p, table, 1); n != 0 {
		t.Fatalf("counter %d, want 0", n)
	}
}

// MariaDB: a deadlock inside a child unit makes InnoDB roll back the whole
// transaction (1213) and the child's ROLLBACK TO fail (1305). The victim's
// caller, which handles the child's error and returns nil, gets
// ErrNotCommitted; the other unit commits. Each unit's outcome matches its
// row.
func TestDeadlockInChildPoisonsTheParentOnMariaDB(t *testing.T) {
	s := dbtest.MySQL(t)
	p := openPool(t, s, 4)
	counter := createCounter(t, p, "scoped_dlchild")
	own := dbtest.CreateIDTable(t, p.admin, "scoped_dlchild_own")
	txs := scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithTeardownErrorHook(nil))
	var both sync.WaitGroup // both children hold their first lock before taking the second
	both.Add(2)
	type result struct {
		id            int64
		err, childErr error
	}
	unit := func(id int64, first, second int) result {
		var childErr error
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.InsertID(own), id); err != nil {
				return err
			}
			childErr = scoped.Run(ctx, func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, "UPDATE "+counter+" SET n = n + 1 WHERE id = ?", first); err != nil {
					both.Done()
					return err
				}
				both.Done()
				both.Wait()
				_, err = tx.ExecContext(ctx, "UPDATE "+counter+" SET n = n + 1 WHERE id = ?", second)
				return err
			})
			// The caller handles its child's error. (Were it to run more
			// statements, MariaDB would run them outside any transaction
			// once InnoDB rolled it back: RELIABILITY.md, limits.)
			return nil
		})
		return result{id, err, childErr}
	}
	results := make(chan result, 2)
	go func() { results <- unit(1, 1, 2) }()
	go func() { results <- unit(2, 2, 1) }()
	rs := []result{<-results, <-results}
	saved := map[int64]bool{}
	for _, id := range dbtest.IDs(t, p.admin, own) {
		saved[id] = true
	}
	deadlocks := 0
	for _, r := range rs {
		if scopedsql.Retryable(r.childErr) {
			deadlocks++
		}
		switch {
		case r.err == nil && !saved[r.id]:
			t.Errorf("unit %d: Run returned nil but its row is missing (child: %v)", r.id, r.childErr)
		case r.err != nil && !errors.Is(r.err, scoped.ErrNotCommitted):
			t.Errorf("unit %d: %v, want nil or ErrNotCommitted", r.id, r.err)
		case r.err != nil && saved[r.id]:
			t.Errorf("unit %d: %v, but its row is saved", r.id, r.err)
		}
	}
	if deadlocks == 0 {
		t.Fatal("no deadlock happened: the test did not exercise its case")
	}
}
