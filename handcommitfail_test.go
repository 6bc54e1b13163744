package scoped_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-scoped/scoped"
)

// A unit that commits one session by hand (saved), then a second one
// whose hand commit fails (its work lost), and is then removed with
// nothing left to commit, saved only part of its work: neither its
// OnCommit nor its OnRollback hooks may run (hooks.go: "one that rolled
// back more, or whose commit failed, saved only part of it, so neither
// kind runs"). The failed hand commit is not recorded, so the unit is
// taken for one whose sessions were all committed by hand and runs its
// OnCommit hooks, claiming work saved that was lost.
// Seen from scopedconnect (stream_cases_test.go, manual/commit/more/commit fails).
func TestFailedHandCommitRunsNoHooks(t *testing.T) {
	saved := 0
	n := 0
	txs := scoped.New(func(context.Context) (*handTx, error) {
		n++
		tx := &handTx{saved: &saved}
		if n == 2 {
			tx.fail = errors.New("commit failed")
		}
		return tx, nil
	}, scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(context.Background())
	var ran []string
	_ = scoped.OnCommit(ctx, func(context.Context) { ran = append(ran, "commit") })
	_ = scoped.OnRollback(ctx, func(context.Context) { ran = append(ran, "rollback") })
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if err := txs.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if err := txs.Commit(ctx); err == nil {
		t.Fatal("second hand commit succeeded, want its failure")
	}
	_ = scope.Remove()
	if saved != 1 {
		t.Fatalf("saved %d, want 1", saved)
	}
	if len(ran) != 0 {
		t.Errorf("hooks %q ran for a unit that saved only part of its work, want none", ran)
	}
}

// A failed hand commit is work lost whatever the unit's own commit says
// afterwards: when that commit saves the rest and only a close fails, the
// outcome is a partial commit, not ErrCommittedCloseFailed, which callers
// (scopedhttp, scopedriver) take for "everything saved" and answer OK.
func TestFailedHandCommitThenCloseFailureIsNotSaved(t *testing.T) {
	saved := 0
	lost := scoped.New(func(context.Context) (*handTx, error) {
		return &handTx{saved: &saved, fail: errors.New("commit failed")}, nil
	}, scoped.WithName("lost"), scoped.WithTeardownErrorHook(nil))
	closing := scoped.New(func(context.Context) (*handTx, error) { return &handTx{saved: &saved}, nil },
		scoped.WithName("closing"), scoped.WithTeardownErrorHook(nil),
		scoped.WithClose(func(context.Context, *handTx) error { return errors.New("close failed") }))
	ctx, scope := scoped.Begin(context.Background())
	var ran []string
	_ = scoped.OnCommit(ctx, func(context.Context) { ran = append(ran, "commit") })
	if _, err := lost.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lost.Commit(ctx); err == nil {
		t.Fatal("hand commit succeeded, want its failure")
	}
	if _, err := closing.Current(ctx); err != nil {
		t.Fatal(err)
	}
	err := scope.Commit()
	if saved != 1 {
		t.Fatalf("saved %d, want 1 (the second session)", saved)
	}
	if !errors.Is(err, scoped.ErrPartiallyCommitted) {
		t.Errorf("Commit = %v, want ErrPartiallyCommitted: the hand commit's work was lost", err)
	}
	if errors.Is(err, scoped.ErrCommittedCloseFailed) && !errors.Is(err, scoped.ErrPartiallyCommitted) && !errors.Is(err, scoped.ErrNotCommitted) {
		t.Errorf("Commit = %v reads as everything saved", err)
	}
	if len(ran) != 0 {
		t.Errorf("hooks %q ran for a unit that lost work, want none", ran)
	}
}
