package scoped_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// The safety net never ends a session created WithoutSafetyNet: a
// cancelled context rolls back the scope's other sessions at once (their
// locks and connections are not held for a client that left) and leaves
// the unguarded one, and the scope, to Remove. Committing such a scope
// afterwards saves nothing, since part of its work was rolled back.
func TestSafetyNetEndsOnlySessionsThatAllowIt(t *testing.T) {
	for _, order := range []string{"guarded first", "unguarded first"} {
		t.Run(order, func(t *testing.T) {
			var calls atomic.Int64
			guarded := txSession(nil, "guarded", &calls)
			unguarded := txSession(nil, "unguarded", &calls, scoped.WithoutSafetyNet())
			m := newManualCtx(context.Background())
			ctx, scope := scoped.Begin(m)
			var a, b *fakeTx
			if order == "guarded first" {
				a, b = mustCurrent(t, guarded, ctx), mustCurrent(t, unguarded, ctx)
			} else {
				b, a = mustCurrent(t, unguarded, ctx), mustCurrent(t, guarded, ctx)
			}
			if reg, _ := m.counts(); reg != 1 {
				t.Fatalf("safety net registered %d times, want 1", reg)
			}
			fired := make(chan struct{})
			scoped.SetNetFiredHook(func(s *scoped.Scope) {
				if s == scope {
					close(fired)
				}
			})
			defer scoped.SetNetFiredHook(nil)
			m.cancel()
			testkit.WaitFor(t, fired, "the safety net")
			if a.rollbacks.Load() != 1 || b.rollbacks.Load() != 0 {
				t.Fatalf("after cancel: guarded rolled back %d times, unguarded %d; want 1 and 0",
					a.rollbacks.Load(), b.rollbacks.Load())
			}
			if scope.Err() != nil {
				t.Fatal("the net ended a scope holding a WithoutSafetyNet session")
			}
			if _, err := guarded.Current(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
				t.Fatalf("Current of a rolled-back session after the net: %v, want ErrScopeClosed", err)
			}
			if got := mustCurrent(t, unguarded, ctx); got != b {
				t.Fatal("the unguarded session changed")
			}
			if err := guarded.Commit(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
				t.Fatalf("ScopedSession.Commit of the rolled-back session: %v, want ErrScopeClosed", err)
			}
			err := scope.Commit()
			if !errors.Is(err, scoped.ErrNotCommitted) || !errors.Is(err, context.Canceled) {
				t.Fatalf("Scope.Commit after the net: %v, want ErrNotCommitted and the context's cause", err)
			}
			if a.commits.Load() != 0 || b.commits.Load() != 0 || a.rollbacks.Load() != 1 || b.rollbacks.Load() != 1 {
				t.Fatalf("after Commit: commits %d/%d rollbacks %d/%d, want 0/0 and 1/1",
					a.commits.Load(), b.commits.Load(), a.rollbacks.Load(), b.rollbacks.Load())
			}
		})
	}
}
