package scopedconnect_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedconnect"
	"github.com/go-scoped/scoped/scopedsql"
)

// A call of every kind (unary, server, client and bidirectional
// streaming) whose client sends cmds and what must come of it in Manual
// or Autocommit mode: the code the server ended the call with, the
// committed rows and the unit hooks that ran (after the response, under
// scopedconnect.Handler).
type callCase struct {
	name  string
	auto  bool
	cmds  []string // insert:N, commit (by hand), send, error, panic, wait (until the client cancels)
	code  connect.Code
	text  string
	rows  []int64
	hooks []string
}

var callCases = []callCase{
	{"manual/ok", false, []string{"insert:1", "send", "insert:2", "send"}, scopedconnect.OK, "", nil, []string{"rollback"}},
	{"auto/ok", true, []string{"insert:1", "send", "insert:2", "send"}, scopedconnect.OK, "", []int64{1, 2}, []string{"commit"}},
	{"manual/commit", false, []string{"insert:1", "send", "commit"}, scopedconnect.OK, "", []int64{1}, []string{"commit"}},
	{"manual/commit/more/ok", false, []string{"insert:1", "commit", "send", "insert:2"}, scopedconnect.OK, "", []int64{1}, nil},
	{"manual/commit/error", false, []string{"insert:1", "commit", "send", "error"}, connect.CodeFailedPrecondition, "handler", []int64{1}, []string{"commit"}},
	{"manual/commit/more/error", false, []string{"insert:1", "commit", "send", "insert:2", "error"}, connect.CodeFailedPrecondition, "handler", []int64{1}, nil},
	{"auto/commit/more/error", true, []string{"insert:1", "commit", "send", "insert:2", "error"}, connect.CodeFailedPrecondition, "handler", []int64{1}, nil},
	{"manual/commit/more/panic", false, []string{"insert:1", "commit", "send", "insert:2", "panic"}, connect.CodeInternal, "recovered", []int64{1}, nil},
	{"auto/panic", true, []string{"insert:1", "send", "panic"}, connect.CodeInternal, "recovered", nil, []string{"rollback"}},
	{"auto/commit fails", true, []string{"insert:1000001", "send"}, connect.CodeInternal, "not saved", nil, []string{"rollback"}},
	{"auto/serialization fails", true, []string{"insert:-1", "send"}, connect.CodeAborted, "retry", nil, []string{"rollback"}},
	{"auto/commit/more/commit fails", true, []string{"insert:1", "commit", "insert:-2", "send"}, connect.CodeInternal, "part of", []int64{1}, nil},
	{"manual/commit/more/cancel", false, []string{"insert:1", "commit", "insert:2", "send", "wait"}, scopedconnect.OK, "", []int64{1}, nil},
	{"auto/commit/more/cancel", true, []string{"insert:1", "commit", "insert:2", "send", "wait"}, connect.CodeCanceled, "had not committed", []int64{1}, nil},
	{"auto/cancel", true, []string{"insert:1", "send", "wait"}, connect.CodeCanceled, "had not committed", nil, []string{"rollback"}},
}

const streamsService = "/scopedtest.Streams/"

// TestCallCases runs every case of every kind of call over every client:
// grpc-go, and connect's Connect, gRPC and gRPC-Web, on PostgreSQL.
func TestCallCases(t *testing.T) {
	for _, kind := range []string{"Unary", "Server", "Client", "Bidi"} {
		for _, proto := range []string{"grpc-go", "connect", "connect-grpc", "connect-grpcweb"} {
			for _, c := range callCases {
				t.Run(kind+"/"+proto+"/"+c.name, func(t *testing.T) { runCallCase(t, kind, proto, c) })
			}
		}
	}
}

// A handler whose second hand commit fails (after a first one saved row
// 1) saved part of its unit: neither kind of hook may run (hooks.go,
// docs/units.md). The core runs OnCommit (TestReviewFailedHandCommitRunsNoHooks).
func TestCallCasesFailedHandCommit(t *testing.T) {
	c := callCase{"manual/commit/more/commit fails", false, []string{"insert:1", "commit", "insert:1000001", "commit", "send"},
		connect.CodeInternal, "handler", []int64{1}, nil}
	for _, kind := range []string{"Unary", "Server", "Client", "Bidi"} {
		for _, proto := range []string{"grpc-go", "connect", "connect-grpc", "connect-grpcweb"} {
			t.Run(kind+"/"+proto, func(t *testing.T) { runCallCase(t, kind, proto, c) })
		}
	}
}

func runCallCase(t *testing.T, kind, proto string, c callCase) {
	db, table := openDB(t)
	txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
	var hooks testkit.Log
	waiting := make(chan struct{})
	// do runs one command; stop says the handler returns err.
	do := func(ctx context.Context, cmd string, send func() error) (stop bool, err error) {
		name, arg, _ := strings.Cut(cmd, ":")
		switch name {
		case "insert":
			id, _ := strconv.ParseInt(arg, 10, 64)
			err = insert(ctx, table, id)
		case "commit":
			err = txs.Commit(ctx)
			if err != nil {
				return true, connect.NewError(connect.CodeInternal, errors.New("handler: hand commit failed"))
			}
		case "send":
			if send != nil {
				err = send()
			}
		case "error":
			return true, connect.NewError(connect.CodeFailedPrecondition, errors.New("handler says no"))
		case "panic":
			panic("boom")
		case "wait":
			close(waiting)
			<-ctx.Done()
			return true, nil
		}
		if err != nil {
			t.Errorf("handler: %s: %v", cmd, err)
			return true, err
		}
		return false, nil
	}
	begin := func(ctx context.Context) {
		scoped.OnCommit(ctx, func(context.Context) { hooks.Add("commit") })
		scoped.OnRollback(ctx, func(context.Context) { hooks.Add("rollback") })
	}
	all := func(ctx context.Context, cmds string, send func() error) error {
		begin(ctx)
		for _, cmd := range strings.Split(cmds, ",") {
			if stop, err := do(ctx, cmd, send); stop {
				return err
			}
		}
		return nil
	}
	mode := scopedconnect.WithCommitMode(scopedconnect.Manual)
	if c.auto {
		mode = scopedconnect.WithCommitMode(scopedconnect.Autocommit)
	}
	done := make(finished, 1)
	opts := []connect.HandlerOption{connect.WithInterceptors(done), recovered,
		connect.WithInterceptors(scopedconnect.NewInterceptor(mode, scopedconnect.Bind(txs)))}
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
			begin(ctx)
			for s.Receive() {
				if stop, err := do(ctx, s.Msg().Service, nil); stop {
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
			begin(ctx)
			for {
				req, err := s.Receive()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				if stop, err := do(ctx, req.Service, func() error { return s.Send(&checkResp{}) }); stop {
					return err
				}
			}
		}, opts...))
	url := serveHandler(t, scopedconnect.Handler(mux))

	ctx, cancel := context.WithCancel(dbtest.Ctx(t))
	defer cancel()
	if slices.Contains(c.cmds, "wait") {
		go func() {
			select {
			case <-waiting:
			case <-ctx.Done():
			}
			cancel()
		}()
	}
	clientErr := callAs(ctx, t, url, kind, proto, c.cmds)
	serr := done.wait(t)
	if code := codeOrOK(serr); code != c.code || !strings.Contains(messageOf(serr), c.text) {
		t.Errorf("server ended the call with %v, want %v %q", serr, c.code, c.text)
	}
	if c.code != scopedconnect.OK && clientErr == nil {
		t.Errorf("client got OK, the server ended with %v", serr)
	}
	if len(c.hooks) > 0 {
		testkit.Eventually(t, "the hooks to run", func() bool { return len(hooks.List()) >= len(c.hooks) })
	}
	if ids := dbtest.IDs(t, db, table); !slices.Equal(ids, c.rows) {
		t.Errorf("rows %v, want %v", ids, c.rows)
	}
	if got := hooks.List(); !slices.Equal(got, c.hooks) {
		t.Errorf("hooks %q, want %q", got, c.hooks)
	}
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
