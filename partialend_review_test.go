package scoped_test

// Review of the partial ends (commit 7a4b60f): an end of a scope waits for
// ScopedSession.Remove/Commit and the safety net's partial end in progress,
// re-entrancy is decided by inTeardown, and a hand commit makes a later
// failed commit ErrPartiallyCommitted. Each test drives one interleaving
// deterministically (channels, testkit bounds; no timing assertions).

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

type prTx struct{ name string }

// prParked reports whether a goroutine whose stack holds marker is
// blocked.
func prParked(marker string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, marker) {
			continue
		}
		head, _, _ := strings.Cut(g, "\n")
		if !strings.Contains(head, "[running]") && !strings.Contains(head, "[runnable]") {
			return true
		}
	}
	return false
}

// prNested returns a ScopedSession of transactions with savepoints whose
// RELEASE fails when failRelease says so.
func prNested(rec *testkit.Log, name string, failRelease func() bool) *scoped.ScopedSession[*prTx] {
	return scoped.New(func(context.Context) (*prTx, error) { return &prTx{name: name}, nil },
		scoped.WithName(name),
		scoped.WithTeardownErrorHook(nil),
		scoped.WithCommit(func(_ context.Context, t *prTx) error { rec.Add("commit %s", t.name); return nil }),
		scoped.WithRollback(func(_ context.Context, t *prTx) error { rec.Add("rollback %s", t.name); return nil }),
		scoped.WithNesting(func(_ context.Context, p *prTx) (scoped.Nested[*prTx], error) {
			sp := &prTx{name: p.name + "/sp"}
			return scoped.Nested[*prTx]{
				Session: sp,
				Release: func(context.Context) error {
					if failRelease() {
						rec.Add("release %s failed", sp.name)
						return errors.New("release refused")
					}
					rec.Add("release %s", sp.name)
					return nil
				},
				Rollback: func(context.Context) error { rec.Add("rollback to %s", sp.name); return nil },
			}, nil
		}))
}

// A nested unit (Run inside Run) released a savepoint by hand
// (ScopedSession.Commit), then its commit failed retryably. Nothing was
// saved, so the root Run under WithRetry must run again. At 7a4b60f it did
// not: the nested Run's error wrapped ErrPartiallyCommitted (a nested
// part's release counted as a hand save) and MayRetry refused it; fixed by
// 43ffc40 (handSaved only for a root scope). Regression test, passes now.
func TestReviewPartialHandReleaseInNestedRunIsRetried(t *testing.T) {
	rec := &testkit.Log{}
	attempts := 0
	a := prNested(rec, "a", func() bool { return false })
	b := prNested(rec, "b", func() bool { return attempts == 1 })
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		attempts++
		return scoped.Run(ctx, func(ctx context.Context) error {
			for _, r := range []*scoped.ScopedSession[*prTx]{a, b} {
				if _, err := r.Current(ctx); err != nil {
					return err
				}
			}
			return a.Commit(ctx) // RELEASE SAVEPOINT
		})
	}, scoped.WithRetry(3, func(error) bool { return true }))
	if err != nil || attempts != 2 {
		t.Errorf("Run: %v after %d attempts; want nil after 2 (the first attempt saved nothing; events %q)", err, attempts, rec.List())
	}
}

//go:noinline
func prScopeRemove(s *scoped.Scope) error { return s.Remove() }

// A hand ScopedSession.Commit (or Remove) of a session WithTeardownTimeout
// whose teardown ends its own scope: the teardown runs on a goroutine of
// its own (endWithin), so inTeardown finds no endNode frame and the
// scope's end waits in awaitPartial for the partial end, which waits for
// the teardown: both wait until the teardown bound (an hour here). Before
// the change the scope's end did not wait for a hand end. (scope.go
// awaitPartial; teardown.go endWithin; the full-end analogue, Scope.Remove
// whose timed teardown removes its scope, waits up to the bound in
// awaitEnd and predates the change.)
func TestReviewPartialTimedTeardownEndingItsScope(t *testing.T) {
	t.Skip("core bug: a timed teardown of a hand end that ends its scope waits for itself until the bound, lead fixes")
	for _, how := range []string{"Commit", "Remove"} {
		t.Run(how, func(t *testing.T) {
			var scope *scoped.Scope
			inner := make(chan error, 1)
			end := func(context.Context, *prTx) error {
				inner <- prScopeRemove(scope)
				return nil
			}
			r := scoped.New(func(context.Context) (*prTx, error) { return &prTx{name: "tx"}, nil },
				scoped.WithTeardownErrorHook(nil),
				scoped.WithTeardownTimeout(time.Hour),
				scoped.WithCommit(end), scoped.WithRollback(end))
			var ctx context.Context
			ctx, scope = scoped.Begin(context.Background())
			if _, err := r.Current(ctx); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				if how == "Commit" {
					done <- r.Commit(ctx)
				} else {
					done <- r.Remove(ctx)
				}
			}()
			if err := testkit.WaitFor(t, done, "the hand "+how); err != nil {
				t.Errorf("hand %s: %v", how, err)
			}
			if err := testkit.WaitFor(t, inner, "the teardown's Scope.Remove"); err != nil && !errors.Is(err, scoped.ErrReentrant) {
				t.Errorf("the teardown's Scope.Remove: %v", err)
			}
		})
	}
}

// A scope removed from the teardown of a session of another scope does not
// wait for a hand commit in progress on its own session: awaitPartial
// skips the wait whenever an endNode frame is on the stack, whatever
// session it ends (scope.go awaitPartial: if !inTeardown()). The Remove
// returns before the commit has ended and runs the unit's OnRollback hooks
// although the commit succeeds: the defect TestHandCommitDuringRemoveHooks
// guards, back for a Remove called from any teardown. (inTeardown's doc
// says it errs on one side only.)
func TestReviewPartialRemoveFromAnotherScopesTeardownWaits(t *testing.T) {
	t.Skip("core bug: Remove from an unrelated teardown skips the wait for a hand commit, lead fixes")
	rec := &testkit.Log{}
	entered, release := make(chan struct{}), make(chan struct{})
	a := scoped.New(func(context.Context) (*prTx, error) { return &prTx{name: "a"}, nil },
		scoped.WithTeardownErrorHook(nil),
		scoped.WithCommit(func(_ context.Context, t *prTx) error {
			close(entered)
			<-release
			rec.Add("commit a")
			return nil
		}),
		scoped.WithRollback(func(_ context.Context, t *prTx) error { rec.Add("rollback a"); return nil }))

	sctx, s := scoped.Begin(context.Background())
	if _, err := a.Current(sctx); err != nil {
		t.Fatal(err)
	}
	if err := scoped.OnCommit(sctx, func(context.Context) { rec.Add("OnCommit") }); err != nil {
		t.Fatal(err)
	}
	if err := scoped.OnRollback(sctx, func(context.Context) { rec.Add("OnRollback") }); err != nil {
		t.Fatal(err)
	}
	// A session of another scope whose close removes s (it owns it).
	inner := make(chan error, 1)
	x := scoped.New(func(context.Context) (*prTx, error) { return &prTx{name: "x"}, nil },
		scoped.WithClose(func(context.Context, *prTx) error { inner <- s.Remove(); return nil }))
	tctx, other := scoped.Begin(context.Background())
	if _, err := x.Current(tctx); err != nil {
		t.Fatal(err)
	}

	commitDone := make(chan error, 1)
	go func() { commitDone <- a.Commit(sctx) }()
	testkit.WaitFor(t, entered, "the hand commit")
	otherDone := make(chan error, 1)
	go func() { otherDone <- prScopeRemove(other) }()
	var early bool
	testkit.Eventually(t, "the other scope's Remove returned or parked", func() bool {
		if len(inner) > 0 {
			early = true
			return true
		}
		return prParked("prScopeRemove")
	})
	close(release)
	if err := testkit.WaitFor(t, commitDone, "the hand commit"); err != nil {
		t.Fatalf("hand Commit: %v", err)
	}
	if err := testkit.WaitFor(t, otherDone, "the other scope's Remove"); err != nil {
		t.Errorf("other Remove: %v", err)
	}
	if err := testkit.WaitFor(t, inner, "s.Remove in x's close"); err != nil {
		t.Errorf("s.Remove in x's close: %v", err)
	}
	if early {
		t.Errorf("s.Remove returned while the hand commit of its session was in progress")
	}
	if rec.Index("OnRollback") >= 0 || rec.Index("OnCommit") < 0 {
		t.Errorf("events %q: the session was committed and nothing was rolled back; want OnCommit only", rec.List())
	}
}
