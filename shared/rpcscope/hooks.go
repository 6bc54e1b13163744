package rpcscope

import (
	"context"
	"sync"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/unithooks"
)

// A call's unit hooks (scoped.OnCommit, scoped.OnRollback) must run after
// its response has been sent, which happens after the interceptor that
// ends the call's scope has returned. Something that runs then puts an
// after in the call's context with [WithAfter]; [Finish] then ends the
// scope with its hooks held and leaves it there, and [RunAfter] runs
// them: scopedgrpc's stats handler on the call's goroutine once the status
// has been sent, scopedconnect's Handler on a goroutine of their own once
// the HTTP handler has returned (net/http ends the response, its HTTP/2
// END_STREAM, trailers or last chunk, only then). Without an after, the
// hooks run when Finish ends the scope.

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

// Pending reports whether the scope Finish left in ctx's after has hooks
// to run, so that an owner that must run them elsewhere (scopedconnect's
// Handler, on a goroutine of their own) starts nothing for a call without
// hooks.
func Pending(ctx context.Context) bool {
	a, _ := ctx.Value(afterKey{}).(*after)
	if a == nil {
		return false
	}
	a.mu.Lock()
	s := a.scope
	a.mu.Unlock()
	return s != nil && unithooks.Pending(s)
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
