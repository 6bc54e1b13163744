package scoped_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// nestTx is a pgx-style transaction whose Begin starts a nested one (a
// savepoint), named after its parent.
type nestTx struct {
	name               string
	rec                *testkit.Log
	kids               *atomic.Int64
	commitErr          error
	commits, rollbacks atomic.Int32
}

func (t *nestTx) Begin(context.Context) (*nestTx, error) {
	c := &nestTx{name: fmt.Sprintf("%s/%d", t.name, t.kids.Add(1)), rec: t.rec, kids: t.kids}
	t.rec.Add("begin %s", c.name)
	return c, nil
}

func (t *nestTx) Commit(context.Context) error {
	t.commits.Add(1)
	t.rec.Add("commit %s", t.name)
	return t.commitErr
}

func (t *nestTx) Rollback(context.Context) error {
	t.rollbacks.Add(1)
	t.rec.Add("rollback %s", t.name)
	return nil
}

func nestSession(rec *testkit.Log, opts ...scoped.Option) *scoped.ScopedSession[*nestTx] {
	return scoped.New(func(context.Context) (*nestTx, error) {
		rec.Add("begin tx")
		return &nestTx{name: "tx", rec: rec, kids: new(atomic.Int64)}, nil
	}, append([]scoped.Option{scoped.WithTeardownErrorHook(nil)}, opts...)...)
}

// Run nests: inside a scope its unit of work is a savepoint of the
// caller's transaction, released when fn succeeds and rolled back alone
// when it fails; only the outermost unit commits.
func TestRunNestsAsSavepoints(t *testing.T) {
	rec := &testkit.Log{}
	txs := nestSession(rec)
	errInner := errors.New("inner failed")
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		if _, err := txs.Current(ctx); err != nil {
			return err
		}
		if err := scoped.Run(ctx, func(ctx context.Context) error {
			_, err := txs.Current(ctx)
			return err
		}); err != nil {
			return err
		}
		if err := scoped.Run(ctx, func(ctx context.Context) error {
			if _, err := txs.Current(ctx); err != nil {
				return err
			}
			return errInner
		}); !errors.Is(err, errInner) {
			return fmt.Errorf("inner Run returned %v, want its error", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"begin tx", "begin tx/1", "commit tx/1", "begin tx/2", "rollback tx/2", "commit tx"}
	if got := rec.List(); !equal(got, want) {
		t.Fatalf("events\n got %v\nwant %v", got, want)
	}
	if st := txs.Stats(); st.Created != 1 || st.Committed != 1 || st.Live != 0 {
		t.Fatalf("stats %+v: savepoints are not sessions of their own", st)
	}
}

// The outer rollback undoes a committed inner unit too: the inner commit
// was a release, not a commit.
func TestOuterRollbackUndoesReleasedInnerUnit(t *testing.T) {
	rec := &testkit.Log{}
	txs := nestSession(rec)
	errOuter := errors.New("outer failed")
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		if err := scoped.Run(ctx, func(ctx context.Context) error { _, err := txs.Current(ctx); return err }); err != nil {
			return err
		}
		return errOuter
	})
	if !errors.Is(err, errOuter) {
		t.Fatalf("Run: %v, want the outer error", err)
	}
	want := []string{"begin tx", "begin tx/1", "commit tx/1", "rollback tx"}
	if got := rec.List(); !equal(got, want) {
		t.Fatalf("events\n got %v\nwant %v", got, want)
	}
}

// Two child units open at once on one transaction get ErrNestedBusy
// instead of interleaving savepoints; one after the other is fine.
func TestConcurrentChildUnitsOnOneTransactionAreRefused(t *testing.T) {
	rec := &testkit.Log{}
	txs := nestSession(rec)
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	mustCurrent(t, txs, ctx)
	c1, child1 := scoped.Begin(ctx)
	mustCurrent(t, txs, c1)
	c2, child2 := scoped.Begin(ctx)
	if _, err := txs.Current(c2); !errors.Is(err, scoped.ErrNestedBusy) {
		t.Fatalf("second open child: %v, want ErrNestedBusy", err)
	}
	if err := child1.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := txs.Current(c2); err != nil {
		t.Fatalf("after the first child ended: %v", err)
	}
	if err := child2.Commit(); err != nil {
		t.Fatal(err)
	}
}

// Concurrent first calls inside one child run the nesting once.
func TestChildCurrentUnderContentionNestsOnce(t *testing.T) {
	rec := &testkit.Log{}
	txs := nestSession(rec)
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	cctx, child := scoped.Begin(ctx)
	var wg sync.WaitGroup
	got := make([]*nestTx, 16)
	for i := range got {
		wg.Add(1)
		go func() { defer wg.Done(); got[i], _ = txs.Current(cctx) }()
	}
	wg.Wait()
	for _, g := range got {
		if g == nil || g != got[0] {
			t.Fatal("callers in one child got different sessions")
		}
	}
	if err := child.Remove(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"begin tx", "begin tx/1", "rollback tx/1"}; !equal(rec.List(), want) {
		t.Fatalf("events %v, want %v", rec.List(), want)
	}
}

// A release that fails is the child's failed commit, and the child's error
// says nothing was committed (it could not be: the parent decides).
func TestChildReleaseFailureIsReported(t *testing.T) {
	errRelease := errors.New("release failed")
	txs := scoped.New(func(context.Context) (*fakeTx, error) { return &fakeTx{name: "tx"}, nil },
		scoped.WithTeardownErrorHook(nil),
		scoped.WithNesting(func(_ context.Context, parent *fakeTx) (scoped.Nested[*fakeTx], error) {
			return scoped.Nested[*fakeTx]{
				Session:  parent,
				Release:  func(context.Context) error { return errRelease },
				Rollback: func(context.Context) error { return nil },
			}, nil
		}))
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	err := scoped.Run(ctx, func(ctx context.Context) error { _, err := txs.Current(ctx); return err })
	if !errors.Is(err, errRelease) || !errors.Is(err, scoped.ErrNotCommitted) {
		t.Fatalf("Run: %v, want the release error as a failed commit", err)
	}
}

// Independent runs a unit of work of its own inside a scope: its own
// session, committed when it returns, whatever the caller does later.
func TestIndependentRunHasItsOwnSession(t *testing.T) {
	rec := &testkit.Log{}
	txs := nestSession(rec)
	var outer, audit *nestTx
	_ = scoped.Run(context.Background(), func(ctx context.Context) error {
		outer, _ = txs.Current(ctx)
		if err := scoped.Run(ctx, func(ctx context.Context) error {
			var err error
			audit, err = txs.Current(ctx)
			return err
		}, scoped.Independent()); err != nil {
			t.Fatal(err)
		}
		return errors.New("outer fails")
	})
	if outer == audit || audit.commits.Load() != 1 || outer.rollbacks.Load() != 1 {
		t.Fatalf("independent unit: same=%v audit commits %d, outer rollbacks %d",
			outer == audit, audit.commits.Load(), outer.rollbacks.Load())
	}
}

// Run's contract: commit on nil, rollback on error (unchanged for
// errors.Is) and on panic (re-panicked), teardown errors joined.
func TestRunCommitsRollsBackAndRepanics(t *testing.T) {
	var calls atomic.Int64
	r := txSession(nil, "tx", &calls)
	var tx *fakeTx
	if err := scoped.Run(context.Background(), func(ctx context.Context) error {
		tx = mustCurrent(t, r, ctx)
		return nil
	}); err != nil || tx.commits.Load() != 1 {
		t.Fatalf("nil: %v, commits %d", err, tx.commits.Load())
	}
	sentinel := errors.New("fn failed")
	errRollback := errors.New("rollback failed")
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		tx = mustCurrent(t, r, ctx)
		tx.rollbackErr = errRollback
		return fmt.Errorf("wrapped: %w", sentinel)
	})
	if !errors.Is(err, sentinel) || !errors.Is(err, errRollback) || tx.rollbacks.Load() != 1 {
		t.Fatalf("error: %v, rollbacks %d", err, tx.rollbacks.Load())
	}
	p := recoverString(func() {
		_ = scoped.Run(context.Background(), func(ctx context.Context) error {
			tx = mustCurrent(t, r, ctx)
			panic("boom")
		})
	})
	if p != "boom" || tx.rollbacks.Load() != 1 || tx.commits.Load() != 0 {
		t.Fatalf("panic: recovered %q, rollbacks %d commits %d", p, tx.rollbacks.Load(), tx.commits.Load())
	}
}

// WithRetry runs fn again in a fresh scope on retryable errors, from fn
// or from the commit, up to maxAttempts, and stops at the context's end.
func TestRunWithRetry(t *testing.T) {
	errConflict := errors.New("serialization failure")
	retryable := func(err error) bool { return errors.Is(err, errConflict) }
	var calls atomic.Int64
	r := txSession(nil, "tx", &calls)
	attempts := 0
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		attempts++
		tx := mustCurrent(t, r, ctx)
		if attempts < 3 {
			tx.commitErr = errConflict // fails at COMMIT, as PostgreSQL reports it
		}
		return nil
	}, scoped.WithRetry(5, retryable))
	if err != nil || attempts != 3 || calls.Load() != 3 {
		t.Fatalf("err %v after %d attempts, %d sessions; want nil after 3", err, attempts, calls.Load())
	}

	attempts = 0
	err = scoped.Run(context.Background(), func(ctx context.Context) error { attempts++; return errConflict },
		scoped.WithRetry(4, retryable))
	if !errors.Is(err, errConflict) || attempts != 4 {
		t.Fatalf("exhausted: %v after %d attempts, want the error after 4", err, attempts)
	}

	attempts = 0
	err = scoped.Run(context.Background(), func(ctx context.Context) error { attempts++; return errors.New("other") },
		scoped.WithRetry(4, retryable))
	if attempts != 1 || err == nil {
		t.Fatalf("not retryable: %d attempts", attempts)
	}

	ctx, cancel := context.WithCancel(context.Background())
	attempts = 0
	err = scoped.Run(ctx, func(ctx context.Context) error {
		attempts++
		cancel()
		return errConflict
	}, scoped.WithRetry(100, retryable))
	if attempts != 1 || !errors.Is(err, context.Canceled) || !errors.Is(err, errConflict) {
		t.Fatalf("cancelled: %v after %d attempts, want the last error and the cause after 1", err, attempts)
	}

	// Inside a scope, a Run is never retried on its own.
	outer, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	attempts = 0
	_ = scoped.Run(outer, func(ctx context.Context) error { attempts++; return errConflict }, scoped.WithRetry(5, retryable))
	if attempts != 1 {
		t.Fatalf("child Run retried: %d attempts", attempts)
	}
}

// A unit whose end saved part of its work, or may have saved it, is never
// run again, whatever the classifier says of the failure: a second run
// would save that work twice.
func TestRunNeverRetriesAUnitThatSavedSomething(t *testing.T) {
	errConflict := errors.New("serialization failure")
	retryable := func(err error) bool { return errors.Is(err, errConflict) }
	for _, c := range []struct {
		name      string
		alone     bool  // the failing session is the unit's only one
		secondErr error // the second session's commit error
		want      error
	}{
		{"partly committed", false, errConflict, scoped.ErrPartiallyCommitted},
		{"outcome unknown", true, fmt.Errorf("%w: %w", scoped.ErrCommitUnknown, errConflict), scoped.ErrCommitUnknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			var calls atomic.Int64
			first, second := txSession(nil, "first", &calls), txSession(nil, "second", &calls)
			attempts := 0
			err := scoped.Run(context.Background(), func(ctx context.Context) error {
				attempts++
				if !c.alone {
					mustCurrent(t, first, ctx)
				}
				mustCurrent(t, second, ctx).commitErr = c.secondErr
				return nil
			}, scoped.WithRetry(3, retryable))
			if attempts != 1 || !errors.Is(err, c.want) {
				t.Fatalf("%d attempts, error %v; want 1 attempt and %v", attempts, err, c.want)
			}
			if scoped.MayRetry(err, retryable) {
				t.Fatalf("MayRetry(%v) = true", err)
			}
		})
	}
	if !scoped.MayRetry(fmt.Errorf("%w: %w", scoped.ErrNotCommitted, errConflict), retryable) {
		t.Fatal("MayRetry refuses a commit that saved nothing")
	}
}

// A savepoint that can be neither released nor rolled back to poisons the
// part enclosing it; where that part cannot be rolled back to either, the
// poison goes up, three levels here: the root rolls back and its commit
// fails with ErrNotCommitted, saying why. A failed release that rolls
// back cleanly poisons nothing.
func TestFailedSavepointPoisonsWhatCannotBeRolledBack(t *testing.T) {
	errGone := errors.New("savepoint does not exist")
	for _, rollbackErr := range []error{errGone, nil} {
		depth := 0
		var calls atomic.Int64
		var root *fakeTx
		txs := txSession(nil, "tx", &calls,
			scoped.WithNesting(func(_ context.Context, parent *fakeTx) (scoped.Nested[*fakeTx], error) {
				depth++
				d := depth
				return scoped.Nested[*fakeTx]{
					Session: parent,
					Release: func(context.Context) error {
						if d == 2 { // the innermost savepoint
							return errGone
						}
						return nil
					},
					Rollback: func(context.Context) error { return rollbackErr },
				}, nil
			}))
		var innerErr error
		err := scoped.Run(context.Background(), func(ctx context.Context) error {
			root = mustCurrent(t, txs, ctx)
			return scoped.Run(ctx, func(ctx context.Context) error {
				mustCurrent(t, txs, ctx)
				innerErr = scoped.Run(ctx, func(ctx context.Context) error { mustCurrent(t, txs, ctx); return nil })
				return nil // handles the innermost unit's failure
			})
		})
		if !errors.Is(innerErr, errGone) || !errors.Is(innerErr, scoped.ErrNotCommitted) {
			t.Fatalf("innermost unit: %v", innerErr)
		}
		if rollbackErr == nil {
			if err != nil || root.commits.Load() != 1 {
				t.Fatalf("rolled back cleanly: root %v, %d commits; want committed", err, root.commits.Load())
			}
			continue
		}
		if !errors.Is(err, scoped.ErrNotCommitted) || !errors.Is(err, errGone) || root.commits.Load() != 0 || root.rollbacks.Load() != 1 {
			t.Fatalf("poisoned root: %v, %d commits, %d rollbacks; want ErrNotCommitted and a rollback",
				err, root.commits.Load(), root.rollbacks.Load())
		}
	}
}
