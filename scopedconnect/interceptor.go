package scopedconnect

import (
	"context"

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
	return func(ctx context.Context, req connect.AnyRequest) (resp connect.AnyResponse, err error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, scope := i.cfg.begin(ctx)
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
		if ferr := i.cfg.finish(ctx, scope, err); ferr != nil {
			return nil, ferr
		}
		return resp, err
	}
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
	code := OK
	if err != nil {
		code = connect.CodeOf(err)
	}
	commit := c.commit != nil && c.commit(code)
	if cause := rpcscope.Finish(ctx, scope, commit, "scopedconnect", errEndedEarly); cause != nil {
		return c.onError(ctx, cause)
	}
	return nil
}
