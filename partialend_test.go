package scoped_test

// Partial ends: an end of a scope waits for
// ScopedSession.Remove/Commit and the safety net's partial end in progress,
// re-entrancy is decided by inTeardown, and a hand commit makes a later
// failed commit ErrPartiallyCommitted. Each test drives one interleaving
// deterministically (channels, testkit bounds; no timing assertions).

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

type prTx struct{ name string }

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
func TestPartialHandReleaseInNestedRunIsRetried(t *testing.T) {
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
func TestPartialTimedTeardownEndingItsScope(t *testing.T) {
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

// A hand commit whose teardown ends its goroutine (runtime.Goexit, as
// t.FailNow in a fake does) still counts its partial end as finished: a
// Scope.Remove afterwards returns instead of waiting for good.
func TestPartialEndThatGoexitsDoesNotHoldTheScope(t *testing.T) {
	r := scoped.New(func(context.Context) (*prTx, error) { return &prTx{name: "tx"}, nil },
		scoped.WithTeardownErrorHook(nil),
		scoped.WithCommit(func(context.Context, *prTx) error { runtime.Goexit(); return nil }),
		scoped.WithRollback(func(context.Context, *prTx) error { return nil }))
	ctx, scope := scoped.Begin(context.Background())
	if _, err := r.Current(ctx); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		_ = r.Commit(ctx)
	}()
	testkit.WaitFor(t, exited, "the hand commit's goroutine")
	removed := make(chan error, 1)
	go func() { removed <- scope.Remove() }()
	if err := testkit.WaitFor(t, removed, "Scope.Remove after a partial end that called Goexit"); err != nil {
		t.Errorf("Remove: %v", err)
	}
}
