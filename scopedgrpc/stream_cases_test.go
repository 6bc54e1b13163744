package scopedgrpc_test

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedgrpc"
	"github.com/go-scoped/scoped/scopedsql"
)

// streamCase is a streaming call whose client sends cmds, one message
// each, and what must come of it: the status the server ended the call
// with, the committed rows and the unit hooks that ran (after the status,
// with StatsHandler).
type streamCase struct {
	name  string
	auto  bool
	cmds  []string // insert:N, commit (by hand), send, error, panic, wait (until the client cancels)
	code  codes.Code
	text  string
	rows  []int64
	hooks []string
}

var streamCases = []streamCase{
	{"manual/ok", false, []string{"insert:1", "send", "insert:2", "send"}, codes.OK, "", nil, []string{"rollback"}},
	{"auto/ok", true, []string{"insert:1", "send", "insert:2", "send"}, codes.OK, "", []int64{1, 2}, []string{"commit"}},
	{"manual/commit", false, []string{"insert:1", "send", "commit"}, codes.OK, "", []int64{1}, []string{"commit"}},
	{"manual/commit/more/error", false, []string{"insert:1", "commit", "send", "insert:2", "error"}, codes.FailedPrecondition, "handler", []int64{1}, nil},
	{"auto/commit/more/error", true, []string{"insert:1", "commit", "send", "insert:2", "error"}, codes.FailedPrecondition, "handler", []int64{1}, nil},
	{"manual/panic", false, []string{"insert:1", "send", "panic"}, codes.Internal, "recovered", nil, []string{"rollback"}},
	{"auto/panic", true, []string{"insert:1", "send", "panic"}, codes.Internal, "recovered", nil, []string{"rollback"}},
	{"auto/commit fails", true, []string{"insert:1000001", "send"}, codes.Internal, "not saved", nil, []string{"rollback"}},
	{"auto/serialization fails", true, []string{"insert:-1", "send"}, codes.Aborted, "retry", nil, []string{"rollback"}},
	{"auto/commit/more/commit fails", true, []string{"insert:1", "commit", "insert:-2", "send"}, codes.Internal, "part of", []int64{1}, nil},
	{"manual/commit/more/cancel", false, []string{"insert:1", "commit", "insert:2", "send", "wait"}, codes.OK, "", []int64{1}, nil},
	{"auto/commit/more/cancel", true, []string{"insert:1", "commit", "insert:2", "send", "wait"}, codes.Canceled, "had not committed", []int64{1}, nil},
	{"auto/cancel", true, []string{"insert:1", "send", "wait"}, codes.Canceled, "had not committed", nil, []string{"rollback"}},
}

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
			t.Run(kind+"/"+c.name, func(t *testing.T) {
				db, table := openDB(t)
				txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
				var hooks testkit.Log
				waiting := make(chan struct{})
				handler := func(_ any, ss grpc.ServerStream) error {
					ctx := ss.Context()
					scoped.OnCommit(ctx, func(context.Context) { hooks.Add("commit") })
					scoped.OnRollback(ctx, func(context.Context) { hooks.Add("rollback") })
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
						cmd, arg, _ := strings.Cut(req.Service, ":")
						switch cmd {
						case "insert":
							id, _ := strconv.ParseInt(arg, 10, 64)
							err = insert(ctx, table, id)
						case "commit":
							err = txs.Commit(ctx)
						case "send":
							if bidi {
								err = ss.SendMsg(&grpc_health_v1.HealthCheckResponse{})
							}
						case "error":
							return status.Error(codes.FailedPrecondition, "handler says no")
						case "panic":
							panic("boom")
						case "wait":
							close(waiting)
							<-ctx.Done()
							return nil
						}
						if err != nil {
							t.Errorf("handler: %s: %v", req.Service, err)
							return err
						}
					}
				}
				mode := scopedgrpc.WithCommitMode(scopedgrpc.Manual)
				if c.auto {
					mode = scopedgrpc.WithCommitMode(scopedgrpc.Autocommit)
				}
				_, fin, done := finished()
				end := make(ended, 1)
				lisOpts := []grpc.ServerOption{
					grpc.StatsHandler(scopedgrpc.StatsHandler()), grpc.StatsHandler(end),
					grpc.ChainStreamInterceptor(fin, recovery.StreamServerInterceptor(recovered),
						scopedgrpc.StreamServerInterceptor(mode, scopedgrpc.Bind(txs))),
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
					for _, cmd := range c.cmds {
						if cs.SendMsg(&grpc_health_v1.HealthCheckRequest{Service: cmd}) != nil {
							return
						}
					}
					_ = cs.CloseSend()
				}()
				if slices.Contains(c.cmds, "wait") {
					go func() {
						select {
						case <-waiting:
						case <-ctx.Done():
						}
						cancel()
					}()
				}
				var cerr error
				for cerr == nil {
					cerr = cs.RecvMsg(&grpc_health_v1.HealthCheckResponse{})
				}
				serr := wait(t, done)
				testkit.WaitFor(t, end, "the call's end on the server")
				if status.Code(serr) != c.code || !strings.Contains(status.Convert(serr).Message(), c.text) {
					t.Errorf("server ended the call with %v, want %v %q", serr, c.code, c.text)
				}
				if c.code != codes.OK && !errors.Is(cerr, io.EOF) && status.Code(cerr) == codes.OK {
					t.Errorf("client got %v", cerr)
				}
				if c.code != codes.OK && errors.Is(cerr, io.EOF) {
					t.Errorf("client got OK (io.EOF), the server ended with %v", serr)
				}
				if ids := dbtest.IDs(t, db, table); !slices.Equal(ids, c.rows) {
					t.Errorf("rows %v, want %v", ids, c.rows)
				}
				if got := hooks.List(); !slices.Equal(got, c.hooks) {
					t.Errorf("hooks %q, want %q", got, c.hooks)
				}
			})
		}
	}
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
