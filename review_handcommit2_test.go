package scoped_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/unit"
)

// Review of the hand-commit fixes (584da7a, 1058c0b): what a unit's owner
// learns after a hand commit (ScopedSession.Commit) that was a savepoint
// release, whose outcome is unknown, or that failed before a close did.

// rh2Tx is a transaction whose commit saves (counted in saved) and then
// returns err; with lose set it fails with err without saving.
type rh2Tx struct {
	saved *int
	err   error
	lose  bool
}

func (x *rh2Tx) Commit(context.Context) error {
	if !x.lose {
		*x.saved++
	}
	return x.err
}
func (x *rh2Tx) Rollback(context.Context) error { return nil }

// rh2Nested is a ScopedSession of handTx whose child scopes take a
// savepoint: releases and rollbacks that save nothing, the release
// failing with releaseErr.
func rh2Nested(saved *int, releaseErr error) *scoped.ScopedSession[*handTx] {
	return scoped.New(func(context.Context) (*handTx, error) { return &handTx{saved: saved}, nil },
		scoped.WithTeardownErrorHook(nil),
		scoped.WithNesting(func(_ context.Context, p *handTx) (scoped.Nested[*handTx], error) {
			return scoped.Nested[*handTx]{
				Session:  p,
				Release:  func(context.Context) error { return releaseErr },
				Rollback: func(context.Context) error { return nil },
			}, nil
		}))
}

// A hand commit in a child scope releases a savepoint: nothing is saved
// yet (the child's end says so, TestHandReleaseInAChildIsNotASave), but
// the released work is now its parent's and stays in the parent's
// transaction when the child is removed. An owner of the child that asks
// SavedByHand whether it may run the child again, inside the same parent,
// must hear yes, it was committed by hand: a second run would repeat that
// work in the parent's transaction, and the parent's commit would save it
// twice. (Decided: a retry of the whole unit is the root's; scopedriver
// leaves it to the enclosing scope, 527938f.)
func TestReviewHandReleaseInAChildIsSavedByHandForItsOwner(t *testing.T) {
	saved := 0
	txs := rh2Nested(&saved, nil)
	ctx, root := scoped.Begin(context.Background())
	defer root.Remove()
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	cctx, child := scoped.Begin(ctx)
	if _, err := txs.Current(cctx); err != nil {
		t.Fatal(err)
	}
	if err := txs.Commit(cctx); err != nil { // RELEASE SAVEPOINT
		t.Fatal(err)
	}
	if err := child.Remove(); err != nil {
		t.Fatal(err)
	}
	if !unit.SavedByHand(child) {
		t.Error("SavedByHand(child) = false after a savepoint release: its owner would run the child again " +
			"and repeat the released work in the parent's transaction")
	}
	if err := root.Commit(); err != nil || saved != 1 {
		t.Errorf("root Commit = %v, saved %d: want nil and the released work saved once", err, saved)
	}
}

// A child's own end releases its savepoints: the first released, a later
// one failing. The released part is its parent's now and is saved if the
// parent commits: the child's error says ErrPartiallyCommitted, not
// ErrNotCommitted, which would tell its caller that none of the child's
// work will be saved. (Decided: the child's outcome counts what its
// parent will keep.)
func TestReviewChildReleasesArePartOfTheParent(t *testing.T) {
	saved := 0
	a, b := rh2Nested(&saved, nil), rh2Nested(&saved, errors.New("release failed"))
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		_, _ = a.Current(ctx)
		_, _ = b.Current(ctx)
		childErr := scoped.Run(ctx, func(ctx context.Context) error {
			if _, err := a.Current(ctx); err != nil {
				return err
			}
			_, err := b.Current(ctx)
			return err
		})
		if !errors.Is(childErr, scoped.ErrPartiallyCommitted) || errors.Is(childErr, scoped.ErrNotCommitted) {
			t.Errorf("child: %v, want ErrPartiallyCommitted: its first release is kept by the parent", childErr)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("root: %v", err)
	}
}

// errUnknownCommit is a commit that was sent and may have landed.
var errUnknownCommit = fmt.Errorf("%w: connection lost during COMMIT", scoped.ErrCommitUnknown)

// A hand commit whose outcome is unknown (its COMMIT landed, the
// connection was lost before the answer) may have saved its work: the
// unit's commit must not say that nothing was (ErrNotCommitted: "not
// saved" to an HTTP client, which sends the request again) nor run the
// OnRollback hooks.
func TestReviewUnknownHandCommitIsNotReportedNotSaved(t *testing.T) {
	saved := 0
	txs := scoped.New(func(context.Context) (*rh2Tx, error) { return &rh2Tx{saved: &saved, err: errUnknownCommit}, nil },
		scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(context.Background())
	var ran []string
	_ = scoped.OnCommit(ctx, func(context.Context) { ran = append(ran, "commit") })
	_ = scoped.OnRollback(ctx, func(context.Context) { ran = append(ran, "rollback") })
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if err := txs.Commit(ctx); !errors.Is(err, scoped.ErrCommitUnknown) {
		t.Fatalf("hand commit = %v, want ErrCommitUnknown", err)
	}
	err := scope.Commit()
	if saved != 1 {
		t.Fatalf("saved %d, want 1 (the hand commit landed)", saved)
	}
	if errors.Is(err, scoped.ErrNotCommitted) || !errors.Is(err, scoped.ErrCommitUnknown) {
		t.Errorf("Commit = %v, want ErrCommitUnknown and not ErrNotCommitted: the hand commit may have saved", err)
	}
	if len(ran) != 0 {
		t.Errorf("hooks %q ran for a unit whose outcome is unknown, want none", ran)
	}
}

// A root Run with WithRetry whose fn's hand commit had an unknown outcome
// and which then failed retryably may have saved that part: MayRetry's
// rule ("none of the unit's work was or may have been saved") forbids a
// second run, which saves it again.
func TestReviewUnknownHandCommitIsNotRunAgain(t *testing.T) {
	saved, runs := 0, 0
	txs := scoped.New(func(context.Context) (*rh2Tx, error) { return &rh2Tx{saved: &saved, err: errUnknownCommit}, nil },
		scoped.WithTeardownErrorHook(nil))
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		runs++
		if _, err := txs.Current(ctx); err != nil {
			return err
		}
		_ = txs.Commit(ctx) // unknown: the handler goes on, as after any failed hand commit
		return errHandConflict
	}, scoped.WithRetry(3, func(err error) bool { return errors.Is(err, errHandConflict) }))
	if !errors.Is(err, errHandConflict) {
		t.Fatalf("Run = %v, want the conflict", err)
	}
	if runs != 1 || saved != 1 {
		t.Errorf("%d runs saved %d times, want 1 and 1", runs, saved)
	}
}

// A failed hand commit and a close failing at the unit's commit: the
// outcome must be one of the commit sentinels, as errors.go documents,
// not also ErrCommittedCloseFailed ("every commit succeeded ... The
// changes were saved"), which an owner checking only that sentinel reads
// as saved (shared/rpcscope's Finish did: the call answered OK).
func TestReviewLostHandCommitThenCloseFailureIsOneOutcome(t *testing.T) {
	type conn struct{}
	for _, committable := range []bool{false, true} {
		t.Run(fmt.Sprintf("rest committable=%v", committable), func(t *testing.T) {
			saved := 0
			lost := scoped.New(func(context.Context) (*rh2Tx, error) {
				return &rh2Tx{saved: &saved, err: errors.New("commit failed"), lose: true}, nil
			}, scoped.WithTeardownErrorHook(nil))
			closeErr := func(context.Context, *conn) error { return errors.New("close failed") }
			opts := []scoped.Option{scoped.WithTeardownErrorHook(nil), scoped.WithClose(closeErr)}
			if committable {
				opts = append(opts, scoped.WithCommit(func(context.Context, *conn) error { saved++; return nil }),
					scoped.WithRollback(func(context.Context, *conn) error { return nil }))
			}
			rest := scoped.New(func(context.Context) (*conn, error) { return &conn{}, nil }, opts...)
			ctx, scope := scoped.Begin(context.Background())
			if _, err := lost.Current(ctx); err != nil {
				t.Fatal(err)
			}
			if err := lost.Commit(ctx); err == nil {
				t.Fatal("hand commit succeeded, want its failure")
			}
			if _, err := rest.Current(ctx); err != nil {
				t.Fatal(err)
			}
			err := scope.Commit()
			want := scoped.ErrNotCommitted
			if committable {
				want = scoped.ErrPartiallyCommitted
			}
			if !errors.Is(err, want) || errors.Is(err, scoped.ErrCommittedCloseFailed) {
				t.Errorf("Commit = %v (saved %d), want %v and not ErrCommittedCloseFailed", err, saved, want)
			}
		})
	}
}

// Not a defect: a hand commit in a nested Run releases a savepoint, so a
// root Run with WithRetry that then fails retryably saved nothing and
// runs again; the root's transaction is committed once, by the last run.
func TestReviewHandReleaseInANestedRunIsRetried(t *testing.T) {
	saved, runs := 0, 0
	txs := rh2Nested(&saved, nil)
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		runs++
		if _, err := txs.Current(ctx); err != nil {
			return err
		}
		if err := scoped.Run(ctx, func(ctx context.Context) error {
			if _, err := txs.Current(ctx); err != nil {
				return err
			}
			return txs.Commit(ctx) // RELEASE SAVEPOINT
		}); err != nil {
			return err
		}
		if runs == 1 {
			return errHandConflict
		}
		return nil
	}, scoped.WithRetry(3, func(err error) bool { return errors.Is(err, errHandConflict) }))
	if err != nil {
		t.Fatalf("Run = %v, want nil after a second run", err)
	}
	if runs != 2 || saved != 1 {
		t.Errorf("%d runs saved %d times, want 2 runs and one save", runs, saved)
	}
}
