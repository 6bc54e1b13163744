package rpcscope

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/unithooks"
	"github.com/go-scoped/scoped/shared/bindings"
)

// Unary runs a unary call in a scope of its own: handle runs the handler
// in the context it is given. Under WithRetry it runs the call again, in
// a fresh scope after a pause, while an attempt fails retryably with
// nothing saved.
func Unary[C comparable, R any](c *Config[C], ctx context.Context, handle func(context.Context) (R, error)) (R, error) {
	for attempt := 1; ; attempt++ {
		again, resp, err := unary(c, ctx, handle, attempt)
		if !again {
			return resp, err
		}
		if !Pause(ctx, attempt) {
			var none R
			return none, c.fail(ctx, fmt.Errorf("%w: %w", c.pkg.EndedEarly, ctx.Err()))
		}
	}
}

// unary runs one attempt of a unary call. Under WithRetry it returns
// again, having ended the scope, when the attempt failed retryably and
// another may follow.
func unary[C comparable, R any](c *Config[C], ctx context.Context, handle func(context.Context) (R, error), attempt int) (again bool, resp R, err error) {
	callCtx := ctx
	ctx, scope := c.begin(ctx)
	returned := false
	defer func() {
		if !returned {
			// A panic (or runtime.Goexit): roll back and let it go on,
			// unrecovered, to the framework's recovery, which answers;
			// the hooks run after that answer, as every call's do.
			hold(ctx, scope)
			_ = scope.Remove()
		}
	}()
	resp, err = handle(ctx)
	returned = true
	retry := attempt < c.attempts && callCtx.Err() == nil
	if c.attempts > 0 {
		// A unit inside asked for a retry, or the handler returned a
		// retryable error: roll back and run again.
		asked := scope.RetryRequested() != nil
		if retry && scope.Err() == nil && (asked || scoped.MayRetry(err, c.retryable)) && !unithooks.SavedByHand(scope) {
			_ = scope.Remove()
			var none R
			return true, none, nil
		}
	}
	cause := c.end(ctx, scope, err)
	if cause == nil {
		return false, resp, err
	}
	var none R
	if retry && !errors.Is(cause, c.pkg.EndedEarly) && scoped.MayRetry(cause, c.retryable) {
		return true, none, nil
	}
	return false, none, c.fail(ctx, cause)
}

// Stream runs a streaming call in a scope of its own: handle runs the
// handler in the context it is given. Streams are never run again.
func (c *Config[C]) Stream(ctx context.Context, handle func(context.Context) error) error {
	ctx, scope := c.begin(ctx)
	returned := false
	defer func() {
		if !returned {
			hold(ctx, scope)
			_ = scope.Remove()
		}
	}()
	err := handle(ctx)
	returned = true
	if cause := c.end(ctx, scope, err); cause != nil {
		return c.fail(ctx, cause)
	}
	return err
}

// begin starts the call's scope. It keeps the core's safety net: when the
// client goes away or the deadline passes, the scope's sessions that may
// be ended from another goroutine are rolled back then, not when the
// handler finally returns.
func (c *Config[C]) begin(ctx context.Context) (context.Context, *scoped.Scope) {
	ctx, scope := scoped.Begin(ctx)
	return bindings.Apply(ctx, c.binds), scope
}

// end ends the scope after the handler returned err, committing it when
// the commit policy accepts err's code (see [Finish] for the commit
// point), and returns the cause for the error handler, or nil.
func (c *Config[C]) end(ctx context.Context, scope *scoped.Scope, err error) error {
	commit := c.commit != nil && c.commit(c.pkg.Code(err))
	return Finish(ctx, scope, commit, c.pkg.Name, c.pkg.EndedEarly)
}
