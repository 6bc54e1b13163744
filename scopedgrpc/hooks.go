package scopedgrpc

import (
	"context"

	"google.golang.org/grpc/stats"

	"github.com/go-scoped/scoped/shared/rpcscope"
)

// StatsHandler returns a grpc stats handler that runs each call's unit
// hooks ([scoped.OnCommit], [scoped.OnRollback]) after its response and
// status have been sent, on the call's goroutine, so that they never
// delay the client. Install it next to the interceptors:
//
//	grpc.NewServer(grpc.StatsHandler(scopedgrpc.StatsHandler()), grpc.ChainUnaryInterceptor(...))
//
// Without it the hooks run when the interceptor ends the call's scope,
// before the response is sent: grpc-go runs nothing of the call on its
// goroutine after the interceptors but its stats handlers.
func StatsHandler() stats.Handler { return hooksHandler{} }

type hooksHandler struct{}

func (hooksHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return rpcscope.WithAfter(ctx)
}

func (hooksHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.End); ok && !s.IsClient() {
		rpcscope.RunAfter(ctx)
	}
}

func (hooksHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (hooksHandler) HandleConn(context.Context, stats.ConnStats) {}
