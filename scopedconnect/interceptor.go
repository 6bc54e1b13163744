package scopedconnect

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/bindings"
	"github.com/go-scoped/scoped/shared/rpcscope"
)

// NewInterceptor returns a handler interceptor that runs every call, unary
// or streaming, in its own [scoped.Scope] and ends it when the handler
// returns: in [Autocommit] mode (or under [WithCommitPolicy]) it commits
// before the response (unary) or the end of the stream is sent, and a
// failed commit replaces the outcome with the error handler's error. The
// decision is made on the handler's error, not on HTTP statuses, so it is
// the same under the Connect, gRPC and gRPC-Web protocols (the last two
// send HTTP 200 with the error in trailers). Everything not committed is
// rolled back.
//
// Give connect's recover option before it, so that a panic rolls back
// here and is then turned into an error there:
//
//	connect.WithRecover(onPanic), connect.WithInterceptors(scopedconnect.NewInterceptor(opts...))
//
// On a client the interceptor does nothing.
func NewInterceptor(opts ...Option) connect.Interceptor {
	return &interceptor{cfg: newConfig(opts)}
}

type interceptor struct{ cfg *config }

func (i *interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		for attempt := 1; ; attempt++ {
			again, resp, err := i.cfg.unary(ctx, req, next, attempt)
			if !again {
				return resp, err
			}
			if !rpcscope.Pause(ctx, attempt) {
				return nil, i.cfg.onError(ctx, fmt.Errorf("%w: %w", errEndedEarly, ctx.Err()))
			}
		}
	}
}

// unary runs one attempt of a unary call in a scope of its own. Under
// WithRetry it returns again, having ended the scope, when the attempt
// failed retryably and another may follow.
func (c *config) unary(ctx context.Context, req connect.AnyRequest, next connect.UnaryFunc, attempt int) (again bool, resp connect.AnyResponse, err error) {
	callCtx := ctx
	ctx, scope := c.begin(ctx)
	returned := false
	defer func() {
		if !returned {
			// A panic (or runtime.Goexit): roll back and let it go on,
			// unrecovered, to connect's recover option or net/http.
			_ = scope.Remove()
		}
	}()
	resp, err = next(ctx, req)
	returned = true
	retry := attempt < c.attempts && callCtx.Err() == nil
	if c.attempts > 0 {
		// A unit inside asked for a retry, or the handler returned a
		// retryable error: roll back and run again.
		asked := scope.RetryRequested() != nil
		if retry && scope.Err() == nil && (asked || scoped.MayRetry(err, c.retryable)) {
			_ = scope.Remove()
			return true, nil, nil
		}
	}
	cause := c.end(ctx, scope, err)
	if cause == nil {
		return false, resp, err
	}
	if retry && !errors.Is(cause, errEndedEarly) && scoped.MayRetry(cause, c.retryable) {
		return true, nil, nil
	}
	return false, nil, c.onError(ctx, cause)
}

func (i *interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, scope := i.cfg.begin(ctx)
		returned := false
		defer func() {
			if !returned {
				_ = scope.Remove()
			}
		}()
		err := next(ctx, conn)
		returned = true
		if ferr := i.cfg.finish(ctx, scope, err); ferr != nil {
			return ferr
		}
		return err
	}
}

// begin starts the call's scope. It keeps the core's safety net: when the
// client goes away or the deadline passes, the scope's sessions that may
// be ended from another goroutine are rolled back then, not when the
// handler finally returns.
func (c *config) begin(ctx context.Context) (context.Context, *scoped.Scope) {
	ctx, scope := scoped.Begin(ctx)
	return bindings.Apply(ctx, c.binds), scope
}

// finish ends the scope after the handler returned err, committing it
// when the commit policy accepts err's code (see [rpcscope.Finish] for the
// commit point). It returns nil when the call may end as the handler
// said, or the error that replaces the handler's outcome.
func (c *config) finish(ctx context.Context, scope *scoped.Scope, err error) error {
	if cause := c.end(ctx, scope, err); cause != nil {
		return c.onError(ctx, cause)
	}
	return nil
}

// end ends the scope as finish does, and returns the cause for the error
// handler, or nil.
func (c *config) end(ctx context.Context, scope *scoped.Scope, err error) error {
	code := OK
	if err != nil {
		code = connect.CodeOf(err)
	}
	commit := c.commit != nil && c.commit(code)
	return rpcscope.Finish(ctx, scope, commit, "scopedconnect", errEndedEarly)
}
