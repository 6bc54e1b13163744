package scopedgrpc

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

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
	if cfg.Retries() {
		return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			return retried(cfg, ctx, req, handler)
		}
	}
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return rpcscope.Unary(cfg, ctx, func(ctx context.Context) (any, error) { return handler(ctx, req) })
	}
}

// retried runs a unary call under WithRetry. Each run sets its trailers
// (grpc.SetTrailer) aside, and the call's status carries those of the run
// that answers: a run that failed and was run again answered nothing.
func retried(cfg *rpcscope.Config[codes.Code], ctx context.Context, req any, handler grpc.UnaryHandler) (any, error) {
	stream := grpc.ServerTransportStreamFromContext(ctx)
	if stream == nil { // not called by a grpc server: nothing to set aside
		return rpcscope.Unary(cfg, ctx, func(ctx context.Context) (any, error) { return handler(ctx, req) })
	}
	var last *runStream
	defer func() {
		if last != nil { // also after a panic, for the recovery's status
			last.flush()
		}
	}()
	return rpcscope.Unary(cfg, ctx, func(ctx context.Context) (any, error) {
		last = &runStream{ServerTransportStream: stream}
		return handler(grpc.NewContextWithServerTransportStream(ctx, last), req)
	})
}

// runStream is the call's transport stream as one run of a retried call
// sees it: the trailers it sets wait for flush, which gives them to the
// call's stream when the run is the one that answers.
type runStream struct {
	grpc.ServerTransportStream
	mu      sync.Mutex
	trailer metadata.MD
	flushed bool
}

func (s *runStream) SetTrailer(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flushed { // set after the call's answer: as the call's stream does
		return s.ServerTransportStream.SetTrailer(md)
	}
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}

func (s *runStream) flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushed = true
	if s.trailer != nil {
		_ = s.ServerTransportStream.SetTrailer(s.trailer)
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
