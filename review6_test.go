package scoped_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/shared/unit"
)

// Review of 05d1950: a failing hand ScopedSession.Commit classified by
// what the unit's earlier hand commits did (scopePlace.before), and the
// late Scope.Commit after the safety net's end.

// r6Want is what a failing hand commit's error must and must not wrap.
type r6Want struct{ partial, unknown, notCommitted bool }

func r6Check(t *testing.T, what string, err error, w r6Want) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s = nil, want a failure", what)
	}
	got := r6Want{errors.Is(err, scoped.ErrPartiallyCommitted), errors.Is(err, scoped.ErrCommitUnknown), errors.Is(err, scoped.ErrNotCommitted)}
	if got != w {
		t.Errorf("%s = %v\n(partial, unknown, notCommitted) = %+v, want %+v", what, err, got, w)
	}
}

// Earlier hand commits in the root {ok, failed, unknown}, optionally a
// hand Remove in between, then a hand commit that fails (or whose outcome
// is unknown): the sentinel says what the unit saved, or may have.
func TestReview6FailingHandCommitAfterEarlierOnes(t *testing.T) {
	rows := []struct {
		earlier []string
		remove  bool
		last    string // "failed" or "unknown"
		want    r6Want
	}{
		{nil, false, "failed", r6Want{notCommitted: true}},
		{[]string{"ok"}, false, "failed", r6Want{partial: true}},
		{[]string{"ok"}, true, "failed", r6Want{partial: true}},
		{[]string{"failed"}, false, "failed", r6Want{notCommitted: true}},
		{[]string{"failed"}, true, "failed", r6Want{notCommitted: true}},
		{[]string{"unknown"}, false, "failed", r6Want{unknown: true}},
		{[]string{"ok", "unknown"}, false, "failed", r6Want{partial: true, unknown: true}},
		{[]string{"failed", "unknown"}, false, "failed", r6Want{unknown: true}},
		{nil, false, "unknown", r6Want{unknown: true}},
		{[]string{"ok"}, false, "unknown", r6Want{partial: true, unknown: true}},
		{[]string{"unknown"}, false, "unknown", r6Want{unknown: true}},
	}
	for _, r := range rows {
		name := strings.Join(r.earlier, "+")
		if r.remove {
			name += "+Remove"
		}
		t.Run(name+" then "+r.last, func(t *testing.T) {
			u := newR4Unit(r.earlier, false)
			ctx, scope := scoped.Begin(context.Background())
			defer func() { _ = scope.Remove() }()
			u.commitByHand(t, ctx)
			if r.remove {
				if _, err := u.rest.Current(ctx); err != nil {
					t.Fatal(err)
				}
				if err := u.rest.Remove(ctx); err != nil {
					t.Fatal(err)
				}
			}
			last := newR4Unit([]string{r.last}, false).hands[0]
			if _, err := last.Current(ctx); err != nil {
				t.Fatal(err)
			}
			r6Check(t, "last hand Commit", last.Commit(ctx), r.want)
		})
	}
}

// A child's hand commits release savepoints: a root hand commit failing
// after one saved nothing, and a child's release failing after a root
// hand commit saved is the child's part only (what the child's own
// Scope.Commit says too).
func TestReview6HandCommitsAcrossAChild(t *testing.T) {
	t.Run("child release then root fails", func(t *testing.T) {
		saved := 0
		fail := false
		txs := scoped.New(func(context.Context) (*rh2Tx, error) {
			if fail {
				return &rh2Tx{saved: &saved, err: errors.New("refused"), lose: true}, nil
			}
			return &rh2Tx{saved: &saved}, nil
		}, scoped.WithTeardownErrorHook(nil), scoped.WithNesting(func(_ context.Context, p *rh2Tx) (scoped.Nested[*rh2Tx], error) {
			return scoped.Nested[*rh2Tx]{Session: p, Release: func(context.Context) error { return nil }, Rollback: func(context.Context) error { return nil }}, nil
		}))
		ctx, root := scoped.Begin(context.Background())
		defer func() { _ = root.Remove() }()
		fail = true // the root's session, made first by the child's Current
		cctx, child := scoped.Begin(ctx)
		if _, err := txs.Current(cctx); err != nil {
			t.Fatal(err)
		}
		if err := txs.Commit(cctx); err != nil {
			t.Fatalf("child hand commit (release) = %v", err)
		}
		_ = child.Remove()
		r6Check(t, "root hand Commit", txs.Commit(ctx), r6Want{notCommitted: true})
		if saved != 0 {
			t.Errorf("saved %d, want 0", saved)
		}
	})
	t.Run("root saved then child release fails", func(t *testing.T) {
		saved := 0
		first := newR4Unit([]string{"ok"}, false)
		txs := rh2Nested(&saved, errors.New("release refused"))
		ctx, root := scoped.Begin(context.Background())
		defer func() { _ = root.Remove() }()
		first.commitByHand(t, ctx)
		cctx, child := scoped.Begin(ctx)
		defer func() { _ = child.Remove() }()
		if _, err := txs.Current(cctx); err != nil {
			t.Fatal(err)
		}
		r6Check(t, "child hand Commit", txs.Commit(cctx), r6Want{notCommitted: true})
	})
}

// The safety net rolled back part of the root (lost), then a session it
// leaves (WithoutSafetyNet) fails its hand commit: partial only if a hand
// commit saved before.
func TestReview6FailingHandCommitAfterTheNetsPartialEnd(t *testing.T) {
	for _, r := range []struct {
		earlier []string
		want    r6Want
	}{{nil, r6Want{notCommitted: true}}, {[]string{"ok"}, r6Want{partial: true}}, {[]string{"unknown"}, r6Want{unknown: true}}} {
		earlier := r.earlier
		t.Run(strings.Join(earlier, "+"), func(t *testing.T) {
			u := newR4Unit(earlier, false)
			saved := 0
			kept := scoped.New(func(context.Context) (*rh2Tx, error) {
				return &rh2Tx{saved: &saved, err: errors.New("refused"), lose: true}, nil
			}, scoped.WithTeardownErrorHook(nil), scoped.WithoutSafetyNet())
			parent, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			ctx, scope := scoped.Begin(parent)
			defer func() { _ = scope.Remove() }()
			u.commitByHand(t, ctx)
			if _, err := u.rest.Current(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := kept.Current(ctx); err != nil {
				t.Fatal(err)
			}
			cancel(errBoundCause)
			testkit.Eventually(t, "the net's partial end", func() bool { return unit.LostByHand(scope) })
			r6Check(t, "hand Commit after the net's partial end", kept.Commit(ctx), r.want)
		})
	}
}

// The net ending a scope: a late Commit, and a late Commit of a child
// ended with it, say what Err says, with the cause.
func TestReview6LateCommitAfterTheNet(t *testing.T) {
	saved := 0
	txs := rh2Nested(&saved, nil)
	parent, cancel := context.WithCancelCause(context.Background())
	ctx, scope := scoped.Begin(parent)
	cctx, child := scoped.Begin(ctx)
	if _, err := txs.Current(cctx); err != nil {
		t.Fatal(err)
	}
	cancel(errBoundCause)
	testkit.Eventually(t, "the net's end", func() bool { return scope.Err() != nil })
	err := scope.Commit()
	if !errors.Is(err, scoped.ErrScopeClosed) || errors.Is(err, scoped.ErrScopeCancelled) != errors.Is(scope.Err(), scoped.ErrScopeCancelled) {
		t.Errorf("late Commit = %v, Err = %v", err, scope.Err())
	}
	if !errors.Is(err, errBoundCause) {
		t.Errorf("late Commit = %v, want the net's cause", err)
	}
	if err := child.Commit(); !errors.Is(err, scoped.ErrScopeCancelled) || !errors.Is(err, errBoundCause) {
		t.Errorf("late child Commit = %v, want ErrScopeCancelled and the cause", err)
	}
	if saved != 0 {
		t.Errorf("saved %d", saved)
	}
}

// A Commit racing the safety net's end: if it arrives second it says the
// net ended the scope, with the cause, exactly as Err does; no deadlock,
// no race on the flags.
func TestReview6CommitRacingTheNet(t *testing.T) {
	for i := 0; i < 50; i++ {
		saved := 0
		txs := scoped.New(func(context.Context) (*rh2Tx, error) { return &rh2Tx{saved: &saved}, nil }, scoped.WithTeardownErrorHook(nil))
		parent, cancel := context.WithCancelCause(context.Background())
		ctx, scope := scoped.Begin(parent)
		if _, err := txs.Current(ctx); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Add(2)
		go func() { defer wg.Done(); cancel(errBoundCause) }()
		go func() { defer wg.Done(); errs[0] = scope.Commit() }()
		wg.Wait()
		errs[1] = scope.Commit() // late, always
		testkit.Eventually(t, "the end", func() bool { return scope.Err() != nil })
		byNet := errors.Is(scope.Err(), scoped.ErrScopeCancelled)
		for j, err := range errs {
			if !errors.Is(err, scoped.ErrScopeClosed) {
				if j == 1 {
					t.Fatalf("late Commit = %v, want ErrScopeClosed", err)
				}
				continue // the first Commit ran the end
			}
			if errors.Is(err, scoped.ErrScopeCancelled) != byNet || byNet && !errors.Is(err, errBoundCause) {
				t.Fatalf("Commit %d = %v, Err = %v: disagree on who ended the scope", j, err, scope.Err())
			}
		}
		if byNet && saved != 0 {
			t.Fatalf("net ended the scope, saved %d", saved)
		}
	}
}
