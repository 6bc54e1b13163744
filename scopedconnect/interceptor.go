package scopedconnect

import (
	"context"

	"connectrpc.com/connect"

	"github.com/go-scoped/scoped/shared/rpcscope"
)

// NewInterceptor returns a handler interceptor that runs every call, unary
// or streaming, in its own [scoped.Scope] and ends it when the handler
// returns: in [Autocommit] mode (or under [WithCommitPolicy]) it commits
// before the response (unary, and a client stream's one response) or the
// end of the stream is sent, and a failed commit replaces the outcome
// with the error handler's error. The decision is made on the handler's
// error, not on HTTP statuses, so it is the same under the Connect, gRPC
// and gRPC-Web protocols (the last two send HTTP 200 with the error in
// trailers). Everything not committed is rolled back.
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

type interceptor struct {
	cfg *rpcscope.Config[connect.Code]
}

func (i *interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		return rpcscope.Unary(i.cfg, ctx, func(ctx context.Context) (connect.AnyResponse, error) { return next(ctx, req) })
	}
}

func (i *interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if conn.Spec().StreamType != connect.StreamTypeClient {
			return i.cfg.Stream(ctx, func(ctx context.Context) error { return next(ctx, conn) })
		}
		// A client stream's one response is sent by connect inside next,
		// before the commit point: held until then, as a unary response
		// is. Sent first, a failed commit would end the stream after it,
		// and a connect client takes that for a malformed stream
		// (CodeUnknown), losing the error handler's code (Aborted,
		// Internal) and the handler's headers.
		held := &heldConn{StreamingHandlerConn: conn}
		if err := i.cfg.Stream(ctx, func(ctx context.Context) error { return next(ctx, held) }); err != nil {
			return err
		}
		for _, msg := range held.msgs {
			if err := conn.Send(msg); err != nil {
				return err
			}
		}
		return nil
	}
}

// heldConn holds the messages sent on it for its interceptor to send.
type heldConn struct {
	connect.StreamingHandlerConn
	msgs []any
}

func (c *heldConn) Send(msg any) error {
	c.msgs = append(c.msgs, msg)
	return nil
}
