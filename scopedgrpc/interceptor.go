package scopedgrpc

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/bindings"
	"github.com/go-scoped/scoped/shared/rpcscope"
)

// UnaryServerInterceptor returns an interceptor that runs every unary call
// in its own [scoped.Scope] and ends it when the handler returns: in
// [Autocommit] mode (or under [WithCommitPolicy]) it commits before the
// response is sent, and a failed commit replaces the response with the
// error handler's status, so that the client never sees OK for changes
// that were not saved. Everything not committed is rolled back.
//
// Install it inside (after) a recovery interceptor:
//
//	grpc.NewServer(grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(), scopedgrpc.UnaryServerInterceptor(opts...)))
//
// so that a panic rolls back here and is then turned into a status there.
func UnaryServerInterceptor(opts ...Option) grpc.UnaryServerInterceptor {
	cfg := newConfig(opts)
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		for attempt := 1; ; attempt++ {
			again, resp, err := cfg.unary(ctx, req, handler, attempt)
			if !again {
				return resp, err
			}
			if !rpcscope.Pause(ctx, attempt) {
				return nil, cfg.onError(ctx, fmt.Errorf("%w: %w", errEndedEarly, ctx.Err()))
			}
		}
	}
}

// unary runs one attempt of a unary call in a scope of its own. Under
// WithRetry it returns again, having ended the scope, when the attempt
// failed retryably and another may follow.
func (c *config) unary(ctx context.Context, req any, handler grpc.UnaryHandler, attempt int) (again bool, resp any, err error) {
	callCtx := ctx
	ctx, scope := c.begin(ctx)
	returned := false
	defer func() {
		if !returned {
			// A panic (or runtime.Goexit): roll back and let it go on,
			// unrecovered, to a recovery interceptor or the server.
			_ = scope.Remove()
		}
	}()
	resp, err = handler(ctx, req)
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
	commit := c.commit != nil && c.commit(status.Code(err))
	cause := rpcscope.Finish(ctx, scope, commit, "scopedgrpc", errEndedEarly)
	if cause == nil {
		return false, resp, err
	}
	if retry && !errors.Is(cause, errEndedEarly) && scoped.MayRetry(cause, c.retryable) {
		return true, nil, nil
	}
	return false, nil, c.onError(ctx, cause)
}

// StreamServerInterceptor returns an interceptor that runs every streaming
// call in its own [scoped.Scope]. The scope is committed (in [Autocommit]
// mode or under [WithCommitPolicy]) when the handler returns, before the
// final status is sent: the messages the handler sent are followed by the
// error handler's status if the commit fails. A handler that must commit
// before it streams commits by hand ([scoped.ScopedSession.Commit]).
func StreamServerInterceptor(opts ...Option) grpc.StreamServerInterceptor {
	cfg := newConfig(opts)
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, scope := cfg.begin(ss.Context())
		returned := false
		defer func() {
			if !returned {
				_ = scope.Remove()
			}
		}()
		err := handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
		returned = true
		if ferr := cfg.finish(ctx, scope, err); ferr != nil {
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
// when the commit policy accepts err's status code (see [rpcscope.Finish]
// for the commit point). It returns nil when the call may end as the
// handler said, or the error that replaces the handler's outcome.
func (c *config) finish(ctx context.Context, scope *scoped.Scope, err error) error {
	commit := c.commit != nil && c.commit(status.Code(err))
	if cause := rpcscope.Finish(ctx, scope, commit, "scopedgrpc", errEndedEarly); cause != nil {
		return c.onError(ctx, cause)
	}
	return nil
}

// serverStream carries the call's scope to the handler.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
