package rpcscope

import (
	"context"
	"sync"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/unithooks"
)

// A call's unit hooks (scoped.OnCommit, scoped.OnRollback) must run after
// its response has been sent, which happens after the interceptor that
// ends the call's scope has returned. Something that runs then on the
// call's goroutine (scopedgrpc's stats handler) puts an after in the
// call's context with [WithAfter]; [Finish] then ends the scope with its
// hooks held and leaves it there, and [RunAfter] runs them. Without an
// after, the hooks run when Finish ends the scope.

type afterKey struct{}

type after struct {
	mu    sync.Mutex
	scope *scoped.Scope
}

// WithAfter returns ctx with a place where [Finish] leaves the call's
// scope, its hooks held for [RunAfter].
func WithAfter(ctx context.Context) context.Context {
	return context.WithValue(ctx, afterKey{}, &after{})
}

// RunAfter runs the hooks of the scope Finish left in ctx's after, once
// the response has been sent.
func RunAfter(ctx context.Context) {
	a, _ := ctx.Value(afterKey{}).(*after)
	if a == nil {
		return
	}
	a.mu.Lock()
	s := a.scope
	a.scope = nil
	a.mu.Unlock()
	if s != nil {
		unithooks.Run(s)
	}
}

// hold makes scope's end keep its hooks for RunAfter, when ctx has an
// after. The scope of an earlier attempt of the call (WithRetry), which
// answered nothing, runs its hooks now.
func hold(ctx context.Context, scope *scoped.Scope) {
	a, _ := ctx.Value(afterKey{}).(*after)
	if a == nil {
		return
	}
	unithooks.Hold(scope)
	a.mu.Lock()
	prev := a.scope
	a.scope = scope
	a.mu.Unlock()
	if prev != nil {
		unithooks.Run(prev)
	}
}
