package rpcscope_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/shared/rpcscope"
)

// lateErrCtx is a cancellable context whose Err says nil until told
// otherwise: it stands still the instant in which Finish has read
// ctx.Err() (nil) and the context is cancelled right after, so that the
// safety net ends the scope before Finish looks at it again.
type lateErrCtx struct {
	context.Context
	errSeen atomic.Bool
}

func (c *lateErrCtx) Err() error {
	if !c.errSeen.Load() {
		return nil
	}
	return c.Context.Err()
}

// A call whose context ends between Finish's check of the context and its
// check of the scope (a server-side deadline passing at that instant) has
// its unit rolled back by the safety net. Finish took that for a scope the
// handler ended itself and returned nil: the call ended with the handler's
// success for work that was rolled back.
func TestCancelFinishNetFiredAfterContextCheck(t *testing.T) {
	inner, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx := &lateErrCtx{Context: inner}
	var rolledBack atomic.Int64
	r := scoped.New(func(context.Context) (*tx, error) { return &tx{}, nil },
		scoped.WithCommit(func(context.Context, *tx) error { return nil }),
		scoped.WithRollback(func(context.Context, *tx) error { rolledBack.Add(1); return nil }))
	sctx, scope := scoped.Begin(ctx) // with the safety net, as the interceptors begin
	if _, err := r.Current(sctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	testkit.Eventually(t, "the safety net ends the scope", func() bool { return scope.Err() != nil })
	err := rpcscope.Finish(sctx, scope, true, "pkg", errEndedEarly)
	ctx.errSeen.Store(true)
	if rolledBack.Load() != 1 {
		t.Fatalf("rolled back %d times, want 1", rolledBack.Load())
	}
	if err == nil || !errors.Is(err, scoped.ErrNotCommitted) && !errors.Is(err, errEndedEarly) {
		t.Errorf("Finish = %v for a unit the safety net rolled back, want the call ended early (not saved)", err)
	}
}
