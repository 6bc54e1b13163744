package scoped_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
)

// A session created WithoutSafetyNet disarms the net of its scope: a
// cancelled context ends nothing on another goroutine, not even the other
// sessions of the scope, and Remove still ends them all.
func TestWithoutSafetyNetSessionDisarmsItsScope(t *testing.T) {
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
			if reg, stopped := m.counts(); reg != stopped {
				t.Fatalf("safety net still registered: %d registered, %d stopped", reg, stopped)
			}
			m.cancel()
			if scope.Err() != nil || a.rollbacks.Load() != 0 || b.rollbacks.Load() != 0 {
				t.Fatal("the cancelled context ended a scope holding a WithoutSafetyNet session")
			}
			if err := scope.Remove(); err != nil {
				t.Fatal(err)
			}
			if a.rollbacks.Load() != 1 || b.rollbacks.Load() != 1 {
				t.Fatalf("Remove: rollbacks %d and %d, want 1 each", a.rollbacks.Load(), b.rollbacks.Load())
			}
		})
	}
}
