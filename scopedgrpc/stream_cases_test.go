package scopedgrpc_test

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"testing"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped/internal/callcases"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedgrpc"
)

// streamCases are the shared call cases (internal/callcases) and those
// only scopedgrpc runs.
var streamCases = append(slices.Clone(callcases.Cases),
	callcases.Case{Name: "manual/panic", Cmds: []string{"insert:1", "send", "panic"}, Code: callcases.Internal, Text: "recovered", Hooks: []string{"rollback"}},
)

// cases binds the shared call cases to this package's database and
// statuses.
var cases = callcases.Kit{OpenDB: openDB, Insert: insert, Error: func(c callcases.Code, msg string) error {
	return status.Error(codes.Code(c), msg)
}}

// ended is a stats handler, installed after scopedgrpc's, that reports
// the end of each call on the server once scopedgrpc's has run its hooks.
type ended chan struct{}

func (e ended) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (e ended) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.End); ok && !s.IsClient() {
		e <- struct{}{}
	}
}
func (e ended) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (e ended) HandleConn(context.Context, stats.ConnStats)                       {}

// Client-streaming and bidirectional calls, in Manual and Autocommit mode,
// with StatsHandler, on PostgreSQL.
func TestStreamCases(t *testing.T) {
	for _, bidi := range []bool{false, true} {
		kind := map[bool]string{false: "client", true: "bidi"}[bidi]
		for _, c := range streamCases {
			t.Run(kind+"/"+c.Name, func(t *testing.T) { runStreamCase(t, bidi, c) })
		}
	}
}

func runStreamCase(t *testing.T, bidi bool, c callcases.Case) {
	u := cases.Unit(t)
	handler := func(_ any, ss grpc.ServerStream) error {
		ctx := ss.Context()
		u.Begin(ctx)
		var send func() error // a client stream answers once, at its end
		if bidi {
			send = func() error { return ss.SendMsg(&grpc_health_v1.HealthCheckResponse{}) }
		}
		for {
			var req grpc_health_v1.HealthCheckRequest
			err := ss.RecvMsg(&req)
			if err == io.EOF {
				if !bidi {
					return ss.SendMsg(&grpc_health_v1.HealthCheckResponse{})
				}
				return nil
			}
			if err != nil {
				return err
			}
			if stop, err := u.Do(ctx, req.Service, send); stop {
				return err
			}
		}
	}
	mode := scopedgrpc.WithCommitMode(scopedgrpc.Manual)
	if c.Auto {
		mode = scopedgrpc.WithCommitMode(scopedgrpc.Autocommit)
	}
	_, fin, done := finished()
	end := make(ended, 1)
	lisOpts := []grpc.ServerOption{
		grpc.StatsHandler(scopedgrpc.StatsHandler()), grpc.StatsHandler(end),
		grpc.ChainStreamInterceptor(fin, recovery.StreamServerInterceptor(recovered),
			scopedgrpc.StreamServerInterceptor(mode, scopedgrpc.Bind(u.Txs))),
	}
	conn := serveStreams(t, handler, lisOpts...)
	ctx, cancel := context.WithCancel(dbtest.Ctx(t))
	defer cancel()
	method := "/scopedtest.Streams/Client"
	if bidi {
		method = "/scopedtest.Streams/Bidi"
	}
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: bidi}, method)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for _, cmd := range c.Cmds {
			if cs.SendMsg(&grpc_health_v1.HealthCheckRequest{Service: cmd}) != nil {
				return
			}
		}
		_ = cs.CloseSend()
	}()
	u.CancelOnWait(ctx, cancel, c.Cmds)
	var cerr error
	for cerr == nil {
		cerr = cs.RecvMsg(&grpc_health_v1.HealthCheckResponse{})
	}
	serr := wait(t, done)
	testkit.WaitFor(t, end, "the call's end on the server")
	u.Check(t, c, callcases.Ended{
		Code: callcases.Code(status.Code(serr)), Message: status.Convert(serr).Message(), Err: serr,
		ClientOK: errors.Is(cerr, io.EOF) || status.Code(cerr) == codes.OK,
	})
}

// serveStreams serves one service with a client-streaming method
// (Client) and a bidirectional one (Bidi), both handled by h, and returns
// a connection to it; both are stopped when t ends.
func serveStreams(t *testing.T, h grpc.StreamHandler, opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "scopedtest.Streams",
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{
			{StreamName: "Client", Handler: h, ClientStreams: true},
			{StreamName: "Bidi", Handler: h, ClientStreams: true, ServerStreams: true},
		},
	}, struct{}{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	conn, err := grpc.Dial(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return conn
}
