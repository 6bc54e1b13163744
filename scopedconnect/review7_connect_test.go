package scopedconnect_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedconnect"
	"github.com/go-scoped/scoped/scopedsql"
)

// A call that panics under connect's recover option runs its OnRollback
// hook after the client has the recovered error, as every other call
// does under Handler: a slow compensation never delays the answer.
// Unary and server streaming, over the Connect protocol.
func TestReview7PanicRunsItsHooksAfterTheResponse(t *testing.T) {
	for _, kind := range []string{"unary", "stream"} {
		t.Run(kind, func(t *testing.T) {
			db, table := openDB(t)
			txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
			answered := make(chan struct{})
			hookSawAnswer := make(chan bool, 1)
			handle := func(ctx context.Context, _ string, send func() error) error {
				if err := insert(ctx, table, 1); err != nil {
					return err
				}
				_ = scoped.OnRollback(ctx, func(context.Context) {
					select {
					case <-answered:
						hookSawAnswer <- true
					case <-time.After(bound / 3):
						// Only when the hook holds the answer back.
						hookSawAnswer <- false
					}
				})
				if send != nil {
					if err := send(); err != nil {
						return err
					}
				}
				panic("handler bug")
			}
			url := serveWrapped(t, scopedconnect.Handler, &service{
				check: func(ctx context.Context, arg string) error { return handle(ctx, arg, nil) },
				watch: handle,
			}, recovered, connect.WithInterceptors(scopedconnect.NewInterceptor(
				scopedconnect.WithCommitMode(scopedconnect.Autocommit), scopedconnect.Bind(txs))))
			var c client
			for _, cl := range clients(t, url) {
				if cl.name == "connect" {
					c = cl
				}
			}
			var code int
			var msg string
			if kind == "unary" {
				code, msg = c.check(dbtest.Ctx(t), "")
			} else {
				_, code, msg = c.watch(dbtest.Ctx(t), "")
			}
			close(answered)
			if connect.Code(code) != connect.CodeInternal || !strings.Contains(msg, "recovered") {
				t.Errorf("call = %d %q, want the recovered Internal", code, msg)
			}
			if !testkit.WaitFor(t, hookSawAnswer, "the OnRollback hook") {
				t.Error("the OnRollback hook of a panicking call ran before the client had its answer")
			}
			if got := dbtest.IDs(t, db, table); len(got) != 0 {
				t.Errorf("rows %v, want none", got)
			}
			testkit.Eventually(t, "the call's connection back in the pool", func() bool { return db.Stats().InUse == 0 })
		})
	}
}

// Unary calls as Connect GET (a procedure without side effects), gzip
// compressed both ways over Connect, gRPC and gRPC-Web, and errors with
// details: the commit decides by the handler's code (a policy that also
// commits FailedPrecondition), a failed commit replaces even an error
// with details, and an error the call ends with keeps its details.
func TestReview7GetCompressionAndErrorDetails(t *testing.T) {
	db, table := openDB(t)
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	detail, err := connect.NewErrorDetail(&checkResp{Status: 3})
	if err != nil {
		t.Fatal(err)
	}
	check := func(ctx context.Context, arg string) error {
		idText, action, _ := strings.Cut(arg, " ")
		id, err := strconv.ParseInt(idText, 10, 64)
		if err != nil {
			return connect.NewError(connect.CodeInvalidArgument, err)
		}
		if err := insert(ctx, table, id); err != nil {
			return err
		}
		var code connect.Code
		switch action {
		case "":
			return nil
		case "precondition":
			code = connect.CodeFailedPrecondition
		case "invalid":
			code = connect.CodeInvalidArgument
		}
		e := connect.NewError(code, errors.New("handler says "+action))
		e.AddDetail(detail)
		e.Meta().Set("X-Handler", action)
		return e
	}
	var mu sync.Mutex
	var methods []string
	record := func(h http.Handler) http.Handler {
		h = scopedconnect.Handler(h)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			methods = append(methods, r.Method)
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	}
	url := serveWrapped(t, record, &service{check: check},
		connect.WithIdempotency(connect.IdempotencyNoSideEffects), connect.WithCompressMinBytes(1),
		connect.WithInterceptors(scopedconnect.NewInterceptor(scopedconnect.Bind(txs),
			scopedconnect.WithCommitPolicy(func(c connect.Code) bool {
				return c == scopedconnect.OK || c == connect.CodeFailedPrecondition
			}))))
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &h2c}}
	h1 := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(h2.CloseIdleConnections)
	t.Cleanup(h1.CloseIdleConnections)
	gz := []connect.ClientOption{connect.WithSendGzip(), connect.WithCompressMinBytes(1)}
	for pi, p := range []struct {
		name   string
		http   *http.Client
		method string
		opts   []connect.ClientOption
	}{
		{"connect-get", h1, http.MethodGet, []connect.ClientOption{connect.WithHTTPGet(), connect.WithIdempotency(connect.IdempotencyNoSideEffects)}},
		{"connect-gzip", h1, http.MethodPost, gz},
		{"grpc-gzip", h2, http.MethodPost, append([]connect.ClientOption{connect.WithGRPC()}, gz...)},
		{"grpcweb-gzip", h1, http.MethodPost, append([]connect.ClientOption{connect.WithGRPCWeb()}, gz...)},
	} {
		cl := connect.NewClient[checkReq, checkResp](p.http, url+checkProcedure, p.opts...)
		for i, c := range []struct {
			id     int64
			action string
			code   connect.Code
			text   string
			detail bool
			saved  bool
		}{
			{1, "", scopedconnect.OK, "", false, true},
			{1000001, "", connect.CodeInternal, "not saved", false, false},
			{-1, "", connect.CodeAborted, "retry", false, false},
			{2, "precondition", connect.CodeFailedPrecondition, "handler says precondition", true, true},
			{1000002, "precondition", connect.CodeInternal, "not saved", false, false},
			{3, "invalid", connect.CodeInvalidArgument, "handler says invalid", true, false},
		} {
			id, off := c.id, int64(1000*pi+10*i)
			if id > 0 {
				id += off
			} else {
				id -= off
			}
			name := fmt.Sprintf("%s/%d %s", p.name, id, c.action)
			mu.Lock()
			methods = methods[:0]
			mu.Unlock()
			resp, err := cl.CallUnary(dbtest.Ctx(t), connect.NewRequest(&checkReq{Service: fmt.Sprintf("%d %s", id, c.action)}))
			mu.Lock()
			if !slices.Equal(methods, []string{p.method}) {
				t.Errorf("%s: server saw %q, want %s", name, methods, p.method)
			}
			mu.Unlock()
			if c.code == scopedconnect.OK {
				if err != nil || resp == nil {
					t.Errorf("%s: %v, want OK", name, err)
				}
			} else {
				var ce *connect.Error
				if !errors.As(err, &ce) || ce.Code() != c.code || !strings.Contains(ce.Message(), c.text) {
					t.Errorf("%s: %v, want %v %q", name, err, c.code, c.text)
				} else if got := len(ce.Details()) > 0; got != c.detail {
					t.Errorf("%s: details %v, want some: %v", name, ce.Details(), c.detail)
				} else if c.detail {
					v, err := ce.Details()[0].Value()
					if m, ok := v.(*checkResp); err != nil || !ok || m.Status != 3 {
						t.Errorf("%s: detail %v, %v; want the handler's", name, v, err)
					}
					if got := ce.Meta().Get("X-Handler"); got != c.action {
						t.Errorf("%s: X-Handler %q, want %q", name, got, c.action)
					}
				}
			}
			if got := slices.Contains(dbtest.IDs(t, db, table), id); got != c.saved {
				t.Errorf("%s: saved = %v, want %v", name, got, c.saved)
			}
		}
	}
	testkit.Eventually(t, "the calls' connections back in the pool", func() bool { return db.Stats().InUse == 0 })
}

// WithRetry over a Connect GET (the request is in the URL, decoded once)
// and over gRPC-Web with gzip: the first run's COMMIT fails with a
// serialization failure, the second run gets the same request and
// commits; the client gets OK once, and only the second run's row is
// saved.
func TestReview7RetryOverGetAndGRPCWeb(t *testing.T) {
	db, table := openDB(t)
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	var mu sync.Mutex
	var seen []string
	check := func(ctx context.Context, arg string) error {
		mu.Lock()
		seen = append(seen, arg)
		run := len(seen)
		mu.Unlock()
		id, err := strconv.ParseInt(arg, 10, 64)
		if err != nil {
			return connect.NewError(connect.CodeInvalidArgument, err)
		}
		if run == 1 {
			id = -id // COMMIT fails with 40001
		}
		return insert(ctx, table, id)
	}
	url := serveWrapped(t, scopedconnect.Handler, &service{check: check},
		connect.WithIdempotency(connect.IdempotencyNoSideEffects),
		connect.WithInterceptors(scopedconnect.NewInterceptor(scopedconnect.Bind(txs),
			scopedconnect.WithCommitMode(scopedconnect.Autocommit), scopedconnect.WithRetry(3, scopedsql.Retryable))))
	h1 := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(h1.CloseIdleConnections)
	for i, opts := range [][]connect.ClientOption{
		{connect.WithHTTPGet(), connect.WithIdempotency(connect.IdempotencyNoSideEffects)},
		{connect.WithGRPCWeb(), connect.WithSendGzip()},
	} {
		id := int64(i + 1)
		mu.Lock()
		seen = nil
		mu.Unlock()
		cl := connect.NewClient[checkReq, checkResp](h1, url+checkProcedure, opts...)
		if _, err := cl.CallUnary(dbtest.Ctx(t), connect.NewRequest(&checkReq{Service: strconv.FormatInt(id, 10)})); err != nil {
			t.Errorf("client %d: %v, want OK", i, err)
		}
		mu.Lock()
		if want := []string{strconv.FormatInt(id, 10), strconv.FormatInt(id, 10)}; !slices.Equal(seen, want) {
			t.Errorf("client %d: runs saw %q, want %q", i, seen, want)
		}
		mu.Unlock()
	}
	if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("rows %v, want [1 2]", got)
	}
	testkit.Eventually(t, "the calls' connections back in the pool", func() bool { return db.Stats().InUse == 0 })
}
