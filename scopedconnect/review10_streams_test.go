package scopedconnect_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedconnect"
)

// review10Case is a call whose handler runs Cmds (callcases' commands) in
// Autocommit mode under scopedconnect.Handler, after setting a response
// header and trailer: what the client must get (messages, code, a text
// of the message), the rows saved and the unit hook that runs once the
// client has the end of the stream ("" for none).
type review10Case struct {
	name  string
	cmds  []string
	msgs  int // messages a server or bidi stream's client receives
	code  connect.Code
	text  string
	rows  []int64
	hook  string
	trail bool // the handler's trailer reaches the client
}

var review10Cases = []review10Case{
	{"ok", []string{"insert:1", "send", "insert:2", "send"}, 2, scopedconnect.OK, "", []int64{1, 2}, "commit", true},
	// Messages sent, then the COMMIT fails on a check constraint (23514).
	{"sent then commit fails", []string{"insert:1", "send", "insert:1000001", "send"}, 2, connect.CodeInternal, "not saved", nil, "rollback", true},
	// A hand commit mid-stream, then the commit point fails: part saved.
	{"hand commit then commit fails", []string{"insert:1", "send", "commit", "insert:1000001", "send"}, 2, connect.CodeInternal, "part of the call's changes were saved", []int64{1}, "", true},
	// The client cancels mid-stream: nothing saved, no connection left.
	{"client cancels", []string{"insert:1", "send", "wait"}, -1, connect.CodeCanceled, "", nil, "rollback", false},
}

// review10Transport is how a connect client reaches the server.
type review10Transport struct {
	name string
	h2c  bool
	opts []connect.ClientOption
}

var review10Transports = []review10Transport{
	{"connect-h1", false, nil},
	{"connect-h2c", true, nil},
	{"grpcweb-h1", false, []connect.ClientOption{connect.WithGRPCWeb()}},
	{"grpcweb-h2c", true, []connect.ClientOption{connect.WithGRPCWeb()}},
}

// Server, client and bidi streams over the Connect protocol and gRPC-Web,
// HTTP/1.1 and h2c, on connect-go's handlers served by httptest on
// 127.0.0.1 against PostgreSQL: a stream whose COMMIT fails after it sent
// its messages ends with an error after them, never a clean end; the
// header and trailer the handler set still reach the client; a hand
// commit mid-stream followed by a failed commit says part was saved; a
// client that cancels mid-stream leaves no row and no connection in use;
// and the unit hooks, under Handler, run once the client has the end of
// the stream (they block until the client has it).
func TestReview10Streams(t *testing.T) {
	for _, kind := range []string{"Server", "Client", "Bidi"} {
		for _, tr := range review10Transports {
			if kind == "Bidi" && !tr.h2c {
				continue // connect-go's bidi streams need HTTP/2
			}
			for _, c := range review10Cases {
				if kind == "Client" && !tr.h2c && c.code == connect.CodeCanceled {
					// net/http's HTTP/1.1 server notices a client gone only
					// once the request body has been read to its end; a
					// handler waiting before it never sees the cancel.
					continue
				}
				t.Run(kind+"/"+tr.name+"/"+c.name, func(t *testing.T) { review10Run(t, kind, tr, c) })
			}
		}
	}
}

type review10Answer struct {
	msgs            int
	err             error
	header, trailer string
}

func review10Run(t *testing.T, kind string, tr review10Transport, c review10Case) {
	var db *sql.DB
	var table string
	kit := cases
	kit.OpenDB = func(t testing.TB) (*sql.DB, string) {
		db, table = openDB(t)
		return db, table
	}
	u := kit.Unit(t)
	hookStarted, release := make(chan string, 1), make(chan struct{})
	block := func(kind string) func(context.Context) {
		return func(context.Context) {
			hookStarted <- kind
			<-release
		}
	}
	begin := func(ctx context.Context, h, tl http.Header) {
		h.Set("X-Review10", "header")
		tl.Set("X-Review10-Trailer", "trailer")
		scoped.OnCommit(ctx, block("commit"))
		scoped.OnRollback(ctx, block("rollback"))
	}
	run := func(ctx context.Context, cmd string, send func() error) (bool, error) { return u.Do(ctx, cmd, send) }
	done := make(finished, 1)
	opts := []connect.HandlerOption{connect.WithInterceptors(done), recovered,
		connect.WithInterceptors(scopedconnect.NewInterceptor(scopedconnect.WithCommitMode(scopedconnect.Autocommit), scopedconnect.Bind(u.Txs)))}
	mux := http.NewServeMux()
	mux.Handle(streamsService+"Server", connect.NewServerStreamHandler(streamsService+"Server",
		func(ctx context.Context, req *connect.Request[checkReq], s *connect.ServerStream[checkResp]) error {
			begin(ctx, s.ResponseHeader(), s.ResponseTrailer())
			for _, cmd := range strings.Split(req.Msg.Service, ",") {
				if stop, err := run(ctx, cmd, func() error { return s.Send(&checkResp{}) }); stop {
					return err
				}
			}
			return nil
		}, opts...))
	mux.Handle(streamsService+"Client", connect.NewClientStreamHandler(streamsService+"Client",
		func(ctx context.Context, s *connect.ClientStream[checkReq]) (*connect.Response[checkResp], error) {
			resp := connect.NewResponse(&checkResp{})
			begin(ctx, resp.Header(), resp.Trailer())
			for s.Receive() {
				if stop, err := run(ctx, s.Msg().Service, nil); stop {
					if err != nil {
						return nil, err
					}
					break
				}
			}
			if err := s.Err(); err != nil {
				return nil, err
			}
			return resp, nil
		}, opts...))
	mux.Handle(streamsService+"Bidi", connect.NewBidiStreamHandler(streamsService+"Bidi",
		func(ctx context.Context, s *connect.BidiStream[checkReq, checkResp]) error {
			begin(ctx, s.ResponseHeader(), s.ResponseTrailer())
			for {
				req, err := s.Receive()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return err
				}
				if stop, err := run(ctx, req.Service, func() error { return s.Send(&checkResp{}) }); stop {
					return err
				}
			}
		}, opts...))
	srv := httptest.NewUnstartedServer(scopedconnect.Handler(mux))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	var protocols http.Protocols
	if tr.h2c {
		protocols.SetUnencryptedHTTP2(true)
	} else {
		protocols.SetHTTP1(true)
	}
	hc := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
	defer hc.CloseIdleConnections()
	cl := connect.NewClient[checkReq, checkResp](hc, srv.URL+streamsService+kind, tr.opts...)

	ctx, cancel := context.WithCancel(dbtest.Ctx(t))
	defer cancel()
	u.CancelOnWait(ctx, cancel, c.cmds)
	answered := make(chan review10Answer, 1)
	go func() { answered <- review10Call(ctx, cl, kind, c.cmds) }()
	// The client has its whole answer while a hook, if any, is blocked.
	a := testkit.WaitFor(t, answered, "the client's answer")
	serr := done.wait(t)
	if c.hook != "" {
		if got := testkit.WaitFor(t, hookStarted, "the hook to start"); got != c.hook {
			t.Errorf("hook %q ran, want %q", got, c.hook)
		}
	}
	close(release)

	if kind != "Client" && c.msgs >= 0 && a.msgs != c.msgs {
		t.Errorf("client received %d messages, want %d", a.msgs, c.msgs)
	}
	code := connect.CodeOf(a.err)
	if a.err == nil {
		code = scopedconnect.OK
	}
	if c.code == connect.CodeCanceled {
		// The client went away: what its library makes of the cut
		// stream is its own; the server's end is what the call ended with.
		code = connect.CodeOf(serr)
	}
	if code != c.code || c.text != "" && !strings.Contains(messageOf(a.err), c.text) {
		t.Errorf("client got %v (code %v), want code %v with %q; the server ended with %v", a.err, code, c.code, c.text, serr)
	}
	if c.code != scopedconnect.OK && a.err == nil {
		t.Errorf("client saw a clean end of stream, the server ended with %v", serr)
	}
	if c.trail && (a.header != "header" || a.trailer != "trailer") {
		t.Errorf("client got header %q and trailer %q, want those the handler set", a.header, a.trailer)
	}
	if ids := dbtest.IDs(t, db, table); !slices.Equal(ids, c.rows) {
		t.Errorf("rows %v, want %v", ids, c.rows)
	}
	testkit.Eventually(t, "no connection in use", func() bool { return db.Stats().InUse == 0 })
	// No transaction of this call left open on the server (the query of
	// another test's session names another table).
	testkit.Eventually(t, "no transaction left idle", func() bool {
		var idle int
		if err := db.QueryRowContext(dbtest.Ctx(t), "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND query LIKE '%' || $1 || '%'", table).Scan(&idle); err != nil {
			t.Fatal(err)
		}
		return idle == 0
	})
}

// review10Call makes one call of kind and returns what its client saw:
// the messages, the error (nil for a clean end) and the handler's header
// and trailer wherever the protocol delivers them (an error's metadata
// included).
func review10Call(ctx context.Context, cl *connect.Client[checkReq, checkResp], kind string, cmds []string) review10Answer {
	var a review10Answer
	meta := func(h, tl http.Header) {
		for _, m := range []http.Header{h, tl} {
			if v := m.Get("X-Review10"); v != "" {
				a.header = v
			}
			if v := m.Get("X-Review10-Trailer"); v != "" {
				a.trailer = v
			}
		}
		var ce *connect.Error
		if errors.As(a.err, &ce) {
			if v := ce.Meta().Get("X-Review10"); v != "" && a.header == "" {
				a.header = v
			}
			if v := ce.Meta().Get("X-Review10-Trailer"); v != "" && a.trailer == "" {
				a.trailer = v
			}
		}
	}
	switch kind {
	case "Server":
		s, err := cl.CallServerStream(ctx, connect.NewRequest(&checkReq{Service: strings.Join(cmds, ",")}))
		if err != nil {
			a.err = err
			return a
		}
		defer s.Close()
		for s.Receive() {
			a.msgs++
		}
		a.err = s.Err()
		meta(s.ResponseHeader(), s.ResponseTrailer())
	case "Client":
		s := cl.CallClientStream(ctx)
		for _, cmd := range cmds {
			if s.Send(&checkReq{Service: cmd}) != nil {
				break
			}
		}
		resp, err := s.CloseAndReceive()
		a.err = err
		if resp != nil {
			meta(resp.Header(), resp.Trailer())
		} else {
			meta(nil, nil)
		}
	case "Bidi":
		s := cl.CallBidiStream(ctx)
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			for _, cmd := range cmds {
				if s.Send(&checkReq{Service: cmd}) != nil {
					break
				}
			}
			_ = s.CloseRequest()
		}()
		for {
			if _, err := s.Receive(); err != nil {
				if !errors.Is(err, io.EOF) {
					a.err = err
				}
				break
			}
			a.msgs++
		}
		meta(s.ResponseHeader(), s.ResponseTrailer())
		_ = s.CloseResponse()
		<-sent
	}
	return a
}

// A client stream whose COMMIT fails with a serialization failure is
// answered Aborted, the code a client retries on, by every client:
// grpc-go, and connect's Connect, gRPC and gRPC-Web. Its one response
// message, which connect sends inside the interceptor, was sent before
// the commit point, and connect's clients took the error after it for a
// malformed stream (Unknown); grpc-go read the status.
func TestReview10ClientStreamConflictIsAborted(t *testing.T) {
	for _, proto := range []string{"grpc-go", "connect", "connect-grpc", "connect-grpcweb"} {
		t.Run(proto, func(t *testing.T) {
			u := cases.Unit(t)
			done := make(finished, 1)
			mux := http.NewServeMux()
			mux.Handle(streamsService+"Client", connect.NewClientStreamHandler(streamsService+"Client",
				func(ctx context.Context, s *connect.ClientStream[checkReq]) (*connect.Response[checkResp], error) {
					for s.Receive() {
						if stop, err := u.Do(ctx, s.Msg().Service, nil); stop {
							return nil, err
						}
					}
					return connect.NewResponse(&checkResp{}), s.Err()
				}, connect.WithInterceptors(done, scopedconnect.NewInterceptor(
					scopedconnect.WithCommitMode(scopedconnect.Autocommit), scopedconnect.Bind(u.Txs)))))
			url := serveHandler(t, mux)
			err := callAs(dbtest.Ctx(t), t, url, "Client", proto, []string{"insert:-1"})
			if serr := done.wait(t); connect.CodeOf(serr) != connect.CodeAborted {
				t.Errorf("server ended the call with %v, want Aborted", serr)
			}
			code := connect.CodeOf(err)
			if proto == "grpc-go" {
				code = connect.Code(status.Code(err))
			}
			if err == nil || code != connect.CodeAborted {
				t.Errorf("client got %v, want Aborted", err)
			}
		})
	}
}
