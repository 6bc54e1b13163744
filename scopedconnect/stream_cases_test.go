package scopedconnect_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped/internal/callcases"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedconnect"
)

// callCases are the shared call cases (internal/callcases) and those only
// scopedconnect runs, each made by every kind of call (unary, server,
// client and bidirectional streaming); the unit hooks run after the
// response, under scopedconnect.Handler.
var callCases = append(slices.Clone(callcases.Cases),
	callcases.Case{Name: "manual/commit/more/ok", Cmds: []string{"insert:1", "commit", "send", "insert:2"}, Code: callcases.OK, Rows: []int64{1}},
	callcases.Case{Name: "manual/commit/error", Cmds: []string{"insert:1", "commit", "send", "error"}, Code: callcases.FailedPrecondition, Text: "handler", Rows: []int64{1}, Hooks: []string{"commit"}},
	callcases.Case{Name: "manual/commit/more/panic", Cmds: []string{"insert:1", "commit", "send", "insert:2", "panic"}, Code: callcases.Internal, Text: "recovered", Rows: []int64{1}},
)

// cases binds the shared call cases to this package's database and
// errors.
var cases = callcases.Kit{OpenDB: openDB, Insert: insert, Error: func(c callcases.Code, msg string) error {
	return connect.NewError(connect.Code(c), errors.New(msg))
}}

const streamsService = "/scopedtest.Streams/"

// TestCallCases runs every case of every kind of call over every client:
// grpc-go, and connect's Connect, gRPC and gRPC-Web, on PostgreSQL.
func TestCallCases(t *testing.T) {
	for _, kind := range []string{"Unary", "Server", "Client", "Bidi"} {
		for _, proto := range []string{"grpc-go", "connect", "connect-grpc", "connect-grpcweb"} {
			for _, c := range callCases {
				t.Run(kind+"/"+proto+"/"+c.Name, func(t *testing.T) { runCallCase(t, kind, proto, c) })
			}
		}
	}
}

// A handler whose second hand commit fails (after a first one saved row
// 1) saved part of its unit: neither kind of hook may run (hooks.go,
// docs/units.md). The core runs OnCommit (TestReviewFailedHandCommitRunsNoHooks).
func TestCallCasesFailedHandCommit(t *testing.T) {
	c := callcases.Case{Name: "manual/commit/more/commit fails", Cmds: []string{"insert:1", "commit", "insert:1000001", "commit", "send"},
		Code: callcases.Internal, Text: "handler", Rows: []int64{1}}
	for _, kind := range []string{"Unary", "Server", "Client", "Bidi"} {
		for _, proto := range []string{"grpc-go", "connect", "connect-grpc", "connect-grpcweb"} {
			t.Run(kind+"/"+proto, func(t *testing.T) { runCallCase(t, kind, proto, c) })
		}
	}
}

func runCallCase(t *testing.T, kind, proto string, c callcases.Case) {
	u := cases.Unit(t)
	all := func(ctx context.Context, cmds string, send func() error) error {
		u.Begin(ctx)
		for _, cmd := range strings.Split(cmds, ",") {
			if stop, err := u.Do(ctx, cmd, send); stop {
				return err
			}
		}
		return nil
	}
	mode := scopedconnect.WithCommitMode(scopedconnect.Manual)
	if c.Auto {
		mode = scopedconnect.WithCommitMode(scopedconnect.Autocommit)
	}
	done := make(finished, 1)
	opts := []connect.HandlerOption{connect.WithInterceptors(done), recovered,
		connect.WithInterceptors(scopedconnect.NewInterceptor(mode, scopedconnect.Bind(u.Txs)))}
	mux := http.NewServeMux()
	mux.Handle(streamsService+"Unary", connect.NewUnaryHandler(streamsService+"Unary",
		func(ctx context.Context, req *connect.Request[checkReq]) (*connect.Response[checkResp], error) {
			if err := all(ctx, req.Msg.Service, nil); err != nil {
				return nil, err
			}
			return connect.NewResponse(&checkResp{}), nil
		}, opts...))
	mux.Handle(streamsService+"Server", connect.NewServerStreamHandler(streamsService+"Server",
		func(ctx context.Context, req *connect.Request[checkReq], s *connect.ServerStream[checkResp]) error {
			return all(ctx, req.Msg.Service, func() error { return s.Send(&checkResp{}) })
		}, opts...))
	mux.Handle(streamsService+"Client", connect.NewClientStreamHandler(streamsService+"Client",
		func(ctx context.Context, s *connect.ClientStream[checkReq]) (*connect.Response[checkResp], error) {
			u.Begin(ctx)
			for s.Receive() {
				if stop, err := u.Do(ctx, s.Msg().Service, nil); stop {
					if err != nil {
						return nil, err
					}
					break
				}
			}
			if err := s.Err(); err != nil {
				return nil, err
			}
			return connect.NewResponse(&checkResp{}), nil
		}, opts...))
	mux.Handle(streamsService+"Bidi", connect.NewBidiStreamHandler(streamsService+"Bidi",
		func(ctx context.Context, s *connect.BidiStream[checkReq, checkResp]) error {
			u.Begin(ctx)
			for {
				req, err := s.Receive()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				if stop, err := u.Do(ctx, req.Service, func() error { return s.Send(&checkResp{}) }); stop {
					return err
				}
			}
		}, opts...))
	url := serveHandler(t, scopedconnect.Handler(mux))

	ctx, cancel := context.WithCancel(dbtest.Ctx(t))
	defer cancel()
	u.CancelOnWait(ctx, cancel, c.Cmds)
	clientErr := callAs(ctx, t, url, kind, proto, c.Cmds)
	serr := done.wait(t)
	if len(c.Hooks) > 0 {
		testkit.Eventually(t, "the hooks to run", func() bool { return len(u.Hooks()) >= len(c.Hooks) })
	}
	u.Check(t, c, callcases.Ended{Code: callcases.Code(codeOrOK(serr)), Message: messageOf(serr), Err: serr, ClientOK: clientErr == nil})
}

func codeOrOK(err error) connect.Code {
	if err == nil {
		return scopedconnect.OK
	}
	return connect.CodeOf(err)
}

func messageOf(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// callAs makes a call of kind with proto's client and returns its error,
// nil when the client was told OK.
func callAs(ctx context.Context, t *testing.T, url, kind, proto string, cmds []string) error {
	t.Helper()
	procedure := streamsService + kind
	if proto == "grpc-go" {
		conn, err := grpc.Dial(strings.TrimPrefix(url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if kind == "Unary" {
			return conn.Invoke(ctx, procedure, &checkReq{Service: strings.Join(cmds, ",")}, &checkResp{})
		}
		cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: kind != "Server", ServerStreams: kind != "Client"}, procedure)
		if err != nil {
			return err
		}
		go func() {
			if kind == "Server" {
				_ = cs.SendMsg(&checkReq{Service: strings.Join(cmds, ",")})
			} else {
				for _, cmd := range cmds {
					if cs.SendMsg(&checkReq{Service: cmd}) != nil {
						return
					}
				}
			}
			_ = cs.CloseSend()
		}()
		for {
			if err := cs.RecvMsg(&checkResp{}); err != nil {
				if err == io.EOF {
					return nil
				}
				return status.Convert(err).Err()
			}
			if kind == "Client" {
				return nil // RecvMsg of a client stream checks the status itself
			}
		}
	}
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &h2c}}
	defer hc.CloseIdleConnections()
	var opts []connect.ClientOption
	switch proto {
	case "connect-grpc":
		opts = append(opts, connect.WithGRPC())
	case "connect-grpcweb":
		opts = append(opts, connect.WithGRPCWeb())
	}
	cl := connect.NewClient[checkReq, checkResp](hc, url+procedure, opts...)
	switch kind {
	case "Unary":
		_, err := cl.CallUnary(ctx, connect.NewRequest(&checkReq{Service: strings.Join(cmds, ",")}))
		return err
	case "Server":
		s, err := cl.CallServerStream(ctx, connect.NewRequest(&checkReq{Service: strings.Join(cmds, ",")}))
		if err != nil {
			return err
		}
		defer s.Close()
		for s.Receive() {
		}
		return s.Err()
	case "Client":
		s := cl.CallClientStream(ctx)
		for _, cmd := range cmds {
			if s.Send(&checkReq{Service: cmd}) != nil {
				break
			}
		}
		_, err := s.CloseAndReceive()
		return err
	}
	s := cl.CallBidiStream(ctx)
	go func() {
		for _, cmd := range cmds {
			if s.Send(&checkReq{Service: cmd}) != nil {
				break
			}
		}
		_ = s.CloseRequest()
	}()
	for {
		if _, err := s.Receive(); err != nil {
			_ = s.CloseResponse()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// serveHandler serves h over HTTP/1.1 and h2c on 127.0.0.1 and returns its
// base URL; the server is closed when t ends.
func serveHandler(t *testing.T, h http.Handler) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protocols, ReadHeaderTimeout: bound}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + lis.Addr().String()
}
