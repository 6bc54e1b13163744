package scopedconnect_test

import (
	"context"
	"testing"

	"connectrpc.com/connect"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedconnect"
)

// nopSession stands in for a transaction whose begin, commit and rollback
// cost nothing, so that the benchmarks measure the interceptors alone.
type nopSession struct{ n int }

type nopKey struct{}

// handWritten is what a user writes without this package: begin a
// transaction, put it in the context, commit when the handler succeeded.
type handWritten struct{}

func (handWritten) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		tx := &nopSession{}
		resp, err := next(context.WithValue(ctx, nopKey{}, tx), req)
		if err == nil {
			tx.n++ // commit
		}
		return resp, err
	}
}

func (handWritten) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (handWritten) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// BenchmarkUnaryInterceptor measures one unary call through each
// interceptor, in process: the interceptor's function is called directly
// with a handler that uses the session once.
func BenchmarkUnaryInterceptor(b *testing.B) {
	sessions := scoped.New(func(context.Context) (*nopSession, error) { return &nopSession{}, nil },
		scoped.WithCommit(func(_ context.Context, s *nopSession) error { s.n++; return nil }),
		scoped.WithRollback(func(context.Context, *nopSession) error { return nil }))
	req := connect.NewRequest(&checkReq{})
	resp := connect.NewResponse(&checkResp{})
	for _, bc := range []struct {
		name          string
		uncancellable bool
		wrap          connect.Interceptor
		handler       connect.UnaryFunc
	}{
		{"handwritten", false, handWritten{}, func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
			ctx.Value(nopKey{}).(*nopSession).n++
			return resp, nil
		}},
		{"scopedconnect", false, scopedconnect.NewInterceptor(scopedconnect.WithCommitMode(scopedconnect.Autocommit), scopedconnect.Bind(sessions)),
			func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
				s, err := scoped.Current[*nopSession](ctx)
				if err != nil {
					return nil, err
				}
				s.n++
				return resp, nil
			}},
		{"scopedconnect-uncancellable", true, scopedconnect.NewInterceptor(scopedconnect.WithCommitMode(scopedconnect.Autocommit), scopedconnect.Bind(sessions)),
			func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
				s, err := scoped.Current[*nopSession](ctx)
				if err != nil {
					return nil, err
				}
				s.n++
				return resp, nil
			}},
	} {
		call := bc.wrap.WrapUnary(bc.handler)
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
				if _, err := call(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
