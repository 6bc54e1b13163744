package scopedgrpc_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedgrpc"
)

// nopSession stands in for a transaction whose begin, commit and rollback
// cost nothing, so that the benchmarks measure the interceptors alone.
type nopSession struct{ n int }

type nopKey struct{}

// handWritten is what a user writes without this package: begin a
// transaction, put it in the context, commit when the handler succeeded.
func handWritten(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	tx := &nopSession{}
	resp, err := h(context.WithValue(ctx, nopKey{}, tx), req)
	if err == nil {
		tx.n++ // commit
	}
	return resp, err
}

// BenchmarkUnaryInterceptor measures one unary call through each
// interceptor, in process: the interceptor function is called directly
// with a handler that uses the session once.
func BenchmarkUnaryInterceptor(b *testing.B) {
	sessions := scoped.New(func(context.Context) (*nopSession, error) { return &nopSession{}, nil },
		scoped.WithCommit(func(_ context.Context, s *nopSession) error { s.n++; return nil }),
		scoped.WithRollback(func(context.Context, *nopSession) error { return nil }))
	req := &grpc_health_v1.HealthCheckRequest{}
	resp := &grpc_health_v1.HealthCheckResponse{}
	info := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	for _, bc := range []struct {
		name          string
		uncancellable bool
		interceptor   grpc.UnaryServerInterceptor
		handler       grpc.UnaryHandler
	}{
		{"handwritten", false, handWritten, func(ctx context.Context, _ any) (any, error) {
			ctx.Value(nopKey{}).(*nopSession).n++
			return resp, nil
		}},
		{"scopedgrpc", false, scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(sessions)),
			func(ctx context.Context, _ any) (any, error) {
				s, err := scoped.Current[*nopSession](ctx)
				if err != nil {
					return nil, err
				}
				s.n++
				return resp, nil
			}},
		{"scopedgrpc-uncancellable", true, scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(sessions)),
			func(ctx context.Context, _ any) (any, error) {
				s, err := scoped.Current[*nopSession](ctx)
				if err != nil {
					return nil, err
				}
				s.n++
				return resp, nil
			}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			// A call's context can be cancelled, as a server's is, so the
			// scope's safety net is armed as in production; the
			// "uncancellable" case shows what the net costs.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if bc.uncancellable {
				ctx = context.Background()
			}
			for b.Loop() {
				if _, err := bc.interceptor(ctx, req, info, bc.handler); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
