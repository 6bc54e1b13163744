package scopedconnect_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	_ "github.com/lib/pq"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(scopedtest.CheckScopesM(m))
}

// bound is how long a test waits for something that must happen before it
// fails instead of hanging: the shared test kit's.
const bound = testkit.Bound

type (
	checkReq  = grpc_health_v1.HealthCheckRequest
	checkResp = grpc_health_v1.HealthCheckResponse
)

const (
	checkProcedure = "/grpc.health.v1.Health/Check"
	watchProcedure = "/grpc.health.v1.Health/Watch"
)

// service is grpc.health.v1.Health served by connect handlers built
// without generated connect code: Check (unary) and Watch (server
// streaming) run the test's functions with the request's Service field.
type service struct {
	check func(ctx context.Context, arg string) error
	watch func(ctx context.Context, arg string, send func() error) error
}

// serve serves s over HTTP/1.1 and unencrypted HTTP/2 (h2c, with prior
// knowledge, as gRPC clients speak it) on 127.0.0.1 and returns its base
// URL; the server is shut down when t ends.
func serve(t testing.TB, s *service, opts ...connect.HandlerOption) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(checkProcedure, connect.NewUnaryHandler(checkProcedure,
		func(ctx context.Context, req *connect.Request[checkReq]) (*connect.Response[checkResp], error) {
			if err := s.check(ctx, req.Msg.Service); err != nil {
				return nil, err
			}
			return connect.NewResponse(&checkResp{Status: grpc_health_v1.HealthCheckResponse_SERVING}), nil
		}, opts...))
	mux.Handle(watchProcedure, connect.NewServerStreamHandler(watchProcedure,
		func(ctx context.Context, req *connect.Request[checkReq], stream *connect.ServerStream[checkResp]) error {
			return s.watch(ctx, req.Msg.Service, func() error {
				return stream.Send(&checkResp{Status: grpc_health_v1.HealthCheckResponse_SERVING})
			})
		}, opts...))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protocols, ReadHeaderTimeout: bound}
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

// A client calls Check and Watch over one protocol and reports the
// outcome as a code (the numbering of gRPC and Connect is the same; 0 is
// OK) and a message.
type client struct {
	name  string
	check func(ctx context.Context, arg string) (code int, msg string)
	watch func(ctx context.Context, arg string) (msgs, code int, msg string)
}

// clients returns every way the tests reach a connect handler at url:
// a grpc-go client, connect clients speaking Connect, gRPC and gRPC-Web,
// and hand-built gRPC-Web requests.
func clients(t testing.TB, url string) []client {
	t.Helper()
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &h2c}}
	h1 := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(h2.CloseIdleConnections)
	t.Cleanup(h1.CloseIdleConnections)

	conn, err := grpc.Dial(strings.TrimPrefix(url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	hc := grpc_health_v1.NewHealthClient(conn)
	grpcGo := client{
		name: "grpc-go",
		check: func(ctx context.Context, arg string) (int, string) {
			_, err := hc.Check(ctx, &checkReq{Service: arg})
			st := status.Convert(err)
			return int(st.Code()), st.Message()
		},
		watch: func(ctx context.Context, arg string) (int, int, string) {
			stream, err := hc.Watch(ctx, &checkReq{Service: arg})
			n := 0
			for err == nil {
				if _, err = stream.Recv(); err == nil {
					n++
				}
			}
			if err == io.EOF {
				return n, 0, ""
			}
			st := status.Convert(err)
			return n, int(st.Code()), st.Message()
		},
	}
	out := []client{grpcGo}
	for _, p := range []struct {
		name string
		http *http.Client
		opts []connect.ClientOption
	}{
		{"connect", h1, nil},
		{"connect-grpc", h2, []connect.ClientOption{connect.WithGRPC()}},
		{"connect-grpcweb", h2, []connect.ClientOption{connect.WithGRPCWeb()}}, // HTTP/1.1 gRPC-Web: raw-grpcweb
	} {
		check := connect.NewClient[checkReq, checkResp](p.http, url+checkProcedure, p.opts...)
		watch := connect.NewClient[checkReq, checkResp](p.http, url+watchProcedure, p.opts...)
		out = append(out, client{
			name: p.name,
			check: func(ctx context.Context, arg string) (int, string) {
				_, err := check.CallUnary(ctx, connect.NewRequest(&checkReq{Service: arg}))
				return connectOutcome(err)
			},
			watch: func(ctx context.Context, arg string) (int, int, string) {
				stream, err := watch.CallServerStream(ctx, connect.NewRequest(&checkReq{Service: arg}))
				if err != nil {
					code, msg := connectOutcome(err)
					return 0, code, msg
				}
				defer stream.Close()
				n := 0
				for stream.Receive() {
					n++
				}
				code, msg := connectOutcome(stream.Err())
				return n, code, msg
			},
		})
	}
	raw := func(ctx context.Context, procedure, arg string) (int, int, string) {
		return grpcWebCall(ctx, t, h1, url+procedure, arg)
	}
	out = append(out, client{
		name: "raw-grpcweb",
		check: func(ctx context.Context, arg string) (int, string) {
			_, c, m := raw(ctx, checkProcedure, arg)
			return c, m
		},
		watch: func(ctx context.Context, arg string) (int, int, string) { return raw(ctx, watchProcedure, arg) },
	})
	return out
}

func connectOutcome(err error) (int, string) {
	if err == nil {
		return 0, ""
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return int(ce.Code()), ce.Message()
	}
	return int(connect.CodeOf(err)), err.Error()
}

// grpcWebCall makes a gRPC-Web call by hand: one length-prefixed message
// in the body, and the response read as data frames followed by a trailer
// frame (flag 0x80) holding grpc-status and grpc-message; a trailers-only
// response carries them in the headers instead. A deadline in ctx is sent
// as grpc-timeout, as a gRPC-Web client does.
func grpcWebCall(ctx context.Context, t testing.TB, hc *http.Client, target, arg string) (msgs, code int, msg string) {
	t.Helper()
	payload, err := proto.Marshal(&checkReq{Service: arg})
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.WriteByte(0)
	_ = binary.Write(&body, binary.BigEndian, uint32(len(payload)))
	body.Write(payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("X-Grpc-Web", "1")
	if d, ok := ctx.Deadline(); ok {
		req.Header.Set("Grpc-Timeout", strconv.FormatInt(time.Until(d).Milliseconds(), 10)+"m")
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, int(connect.CodeDeadlineExceeded), err.Error()
		}
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("gRPC-Web answered HTTP %d, not 200", resp.StatusCode)
	}
	trailer := textproto.MIMEHeader(resp.Header)
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		if ctx.Err() != nil {
			return 0, int(connect.CodeDeadlineExceeded), err.Error()
		}
		t.Fatal(err)
	}
	sawTrailer := false
	for len(data) > 0 {
		if len(data) < 5 {
			t.Fatalf("truncated gRPC-Web frame header: %q", data)
		}
		flag, n := data[0], binary.BigEndian.Uint32(data[1:5])
		if uint32(len(data)-5) < n {
			t.Fatalf("truncated gRPC-Web frame: want %d bytes, have %d", n, len(data)-5)
		}
		frame := data[5 : 5+n]
		data = data[5+n:]
		if flag&0x80 == 0 {
			msgs++
			continue
		}
		sawTrailer = true
		r := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(frame, "\r\n"...))))
		if trailer, err = r.ReadMIMEHeader(); err != nil && err != io.EOF {
			t.Fatalf("trailer frame %q: %v", frame, err)
		}
	}
	if !sawTrailer && resp.Header.Get("Grpc-Status") == "" {
		t.Fatal("gRPC-Web response has neither a trailer frame nor a trailers-only Grpc-Status")
	}
	code, err = strconv.Atoi(trailer.Get("Grpc-Status"))
	if err != nil {
		t.Fatalf("grpc-status %q: %v", trailer.Get("Grpc-Status"), err)
	}
	msg, err = url.PathUnescape(trailer.Get("Grpc-Message"))
	if err != nil {
		t.Fatalf("grpc-message %q: %v", trailer.Get("Grpc-Message"), err)
	}
	return msgs, code, msg
}

// openDB opens the PostgreSQL test database and a fresh table whose
// COMMITs fail on demand (dbtest.CreateCommitFailureTable).
func openDB(t testing.TB) (*sql.DB, string) {
	t.Helper()
	srv := dbtest.Postgres(t)
	db, err := sql.Open(srv.Driver, srv.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	table := dbtest.CreateCommitFailureTable(t, db, "scopedconnect")
	return db, table
}
