package scopedgrpc

import (
	"context"

	"google.golang.org/grpc"

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
		return rpcscope.Unary(cfg, ctx, func(ctx context.Context) (any, error) { return handler(ctx, req) })
	}
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
		return cfg.Stream(ss.Context(), func(ctx context.Context) error {
			return handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
		})
	}
}

// serverStream carries the call's scope to the handler.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
