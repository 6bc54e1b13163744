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
