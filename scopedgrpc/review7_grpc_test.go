package scopedgrpc_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpchealth "google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedgrpc"
	"github.com/go-scoped/scoped/scopedsql"
)

// review7Recover is a hand-written recovery interceptor, as
// grpc-ecosystem's recovery is: a panic becomes codes.Internal.
func review7Recover(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, status.Errorf(codes.Internal, "recovered: %v", p)
		}
	}()
	return h(ctx, req)
}

func review7RecoverStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = status.Errorf(codes.Internal, "recovered: %v", p)
		}
	}()
	return h(srv, ss)
}

// noConnsInUse fails t unless every pool connection is back in the pool.
func noConnsInUse(t *testing.T, db *sql.DB) {
	t.Helper()
	testkit.Eventually(t, "the call's connection back in the pool", func() bool { return db.Stats().InUse == 0 })
}

// Under WithRetry nothing of a failed run reaches the client (the
// package's doc names only headers as the exception): a trailer the
// failed first run set (grpc.SetTrailer) must not be in the answer of the
// second, which sets its own. The first run fails in the handler or at
// its COMMIT (a serialization failure).
func TestReview7RetryDropsTheFailedRunsTrailers(t *testing.T) {
	for _, atCommit := range []bool{false, true} {
		t.Run(fmt.Sprint("at commit=", atCommit), func(t *testing.T) {
			db, table := openDB(t)
			users := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
			var runs atomic.Int64
			client := serve(t, &health{check: func(ctx context.Context) error {
				run := runs.Add(1)
				if err := grpc.SetTrailer(ctx, metadata.Pairs("x-run", fmt.Sprint(run))); err != nil {
					return err
				}
				switch {
				case run > 1:
					return insert(ctx, table, 1)
				case atCommit:
					return insert(ctx, table, -1)
				}
				return errConflict
			}}, grpc.ChainUnaryInterceptor(scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit),
				scopedgrpc.Bind(users), scopedgrpc.WithRetry(3, retryable))))
			var trailer metadata.MD
			if _, err := client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{}, grpc.Trailer(&trailer)); err != nil {
				t.Fatal(err)
			}
			if runs.Load() != 2 {
				t.Fatalf("%d runs, want 2", runs.Load())
			}
			if got := trailer.Get("x-run"); !slices.Equal(got, []string{"2"}) {
				t.Errorf("trailer x-run = %q, want only the answering run's [2]", got)
			}
			if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1}) {
				t.Errorf("rows %v, want [1]", got)
			}
			noConnsInUse(t, db)
		})
	}
}

// Metadata the handler set survives a failed commit as it is (the call
// ends with the error handler's status, with the handler's header and
// trailer), and no message reaches the client.
func TestReview7FailedCommitKeepsTheHandlersMetadata(t *testing.T) {
	db, table := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	client := serve(t, &health{check: func(ctx context.Context) error {
		if err := grpc.SetHeader(ctx, metadata.Pairs("x-h", "1")); err != nil {
			return err
		}
		if err := grpc.SetTrailer(ctx, metadata.Pairs("x-t", "1")); err != nil {
			return err
		}
		return insert(ctx, table, 1000001)
	}}, grpc.ChainUnaryInterceptor(scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(users))))
	var header, trailer metadata.MD
	resp, err := client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "not saved") || resp != nil {
		t.Errorf("call = %v, %v; want Internal, not saved, no response", resp, err)
	}
	if !slices.Equal(header.Get("x-h"), []string{"1"}) || !slices.Equal(trailer.Get("x-t"), []string{"1"}) {
		t.Errorf("header %v trailer %v, want the handler's x-h and x-t", header, trailer)
	}
	if got := dbtest.IDs(t, db, table); len(got) != 0 {
		t.Errorf("rows %v, want none", got)
	}
	noConnsInUse(t, db)
}

// A call that panics under a recovery interceptor runs its OnRollback
// hook after the client has the recovered status, as every other call
// does under StatsHandler: a slow compensation never delays the answer.
func TestReview7PanicRunsItsHooksAfterTheResponse(t *testing.T) {
	for _, kind := range []string{"unary", "stream"} {
		t.Run(kind, func(t *testing.T) {
			db, table := openDB(t)
			users := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
			answered := make(chan struct{})
			hookSawAnswer := make(chan bool, 1)
			handle := func(ctx context.Context, send func() error) error {
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
			opts := []scopedgrpc.Option{scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(users)}
			client := serve(t, &health{
				check: func(ctx context.Context) error { return handle(ctx, nil) },
				watch: handle,
			}, grpc.StatsHandler(scopedgrpc.StatsHandler()),
				grpc.ChainUnaryInterceptor(review7Recover, scopedgrpc.UnaryServerInterceptor(opts...)),
				grpc.ChainStreamInterceptor(review7RecoverStream, scopedgrpc.StreamServerInterceptor(opts...)))
			var err error
			if kind == "unary" {
				_, err = client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{})
			} else {
				var stream grpc_health_v1.Health_WatchClient
				stream, err = client.Watch(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{})
				for err == nil {
					_, err = stream.Recv()
				}
			}
			close(answered)
			if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "recovered") {
				t.Errorf("call = %v, want the recovered Internal", err)
			}
			if !testkit.WaitFor(t, hookSawAnswer, "the OnRollback hook") {
				t.Error("the OnRollback hook of a panicking call ran before the client had its answer")
			}
			if got := dbtest.IDs(t, db, table); len(got) != 0 {
				t.Errorf("rows %v, want none", got)
			}
			noConnsInUse(t, db)
		})
	}
}

// A recovery interceptor inside scopedgrpc's (the other order than the
// documented one) turns the panic into Internal before scopedgrpc sees
// it: the call rolls back, as for any error.
func TestReview7RecoveryInsideTheInterceptor(t *testing.T) {
	db, table := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	var hooks testkit.Log
	client := serve(t, &health{check: func(ctx context.Context) error {
		if err := insert(ctx, table, 1); err != nil {
			return err
		}
		_ = scoped.OnCommit(ctx, func(context.Context) { hooks.Add("commit") })
		_ = scoped.OnRollback(ctx, func(context.Context) { hooks.Add("rollback") })
		panic("handler bug")
	}}, grpc.ChainUnaryInterceptor(scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit),
		scopedgrpc.Bind(users), scopedgrpc.WithRetry(3, retryable)), review7Recover))
	_, err := client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "recovered") {
		t.Errorf("call = %v, want the recovered Internal", err)
	}
	if got := dbtest.IDs(t, db, table); len(got) != 0 {
		t.Errorf("rows %v, want none", got)
	}
	if got := hooks.List(); !slices.Equal(got, []string{"rollback"}) {
		t.Errorf("hooks %q, want [rollback]", got)
	}
	noConnsInUse(t, db)
}

// Services that never ask for a session pass through both interceptors
// unchanged, in Autocommit with a binding and StatsHandler: the real
// health service (unary Check, server-streaming Watch ended by the
// client), reflection (bidirectional) and the UnknownServiceHandler. No
// connection is opened for them.
func TestReview7ServicesWithoutSessionsPassThrough(t *testing.T) {
	db, _ := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	opened := db.Stats().OpenConnections
	var unknownErr atomic.Pointer[error] // what the unknown service handler returns
	var errHandlerCalls atomic.Int64
	opts := []scopedgrpc.Option{scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(users),
		scopedgrpc.WithErrorHandler(func(ctx context.Context, err error) error {
			errHandlerCalls.Add(1)
			return scopedgrpc.DefaultErrorHandler(ctx, err)
		})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.StatsHandler(scopedgrpc.StatsHandler()),
		grpc.ChainUnaryInterceptor(scopedgrpc.UnaryServerInterceptor(opts...)),
		grpc.ChainStreamInterceptor(scopedgrpc.StreamServerInterceptor(opts...)),
		grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
			if _, ok := scoped.FromContext(ss.Context()); !ok {
				return status.Error(codes.FailedPrecondition, "no scope in the unknown service handler")
			}
			return *unknownErr.Load()
		}))
	hs := grpchealth.NewServer()
	grpc_health_v1.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
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
	ctx := dbtest.Ctx(t)
	hc := grpc_health_v1.NewHealthClient(conn)
	if resp, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil || resp.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Errorf("health Check = %v, %v", resp, err)
	}
	if _, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("health Check of an unknown service = %v, want NotFound as the health server says", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	watch, err := hc.Watch(wctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Errorf("health Watch = %v, %v", resp, err)
	}
	cancel()
	for err == nil {
		_, err = watch.Recv()
	}
	if status.Code(err) != codes.Canceled {
		t.Errorf("Watch ended by the client with %v, want Canceled", err)
	}

	rc := grpc_reflection_v1alpha.NewServerReflectionClient(conn)
	rs, err := rc.ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&grpc_reflection_v1alpha.ServerReflectionRequest{MessageRequest: &grpc_reflection_v1alpha.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	if !slices.Contains(names, "grpc.health.v1.Health") {
		t.Errorf("reflection lists %q, want grpc.health.v1.Health among them", names)
	}
	_ = rs.CloseSend()
	if _, err := rs.Recv(); err != io.EOF {
		t.Errorf("reflection stream ended with %v, want io.EOF", err)
	}

	for _, want := range []error{status.Error(codes.Unimplemented, "no such method here"), nil} {
		unknownErr.Store(&want)
		cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/nowhere.Service/Method")
		if err != nil {
			t.Fatal(err)
		}
		_ = cs.CloseSend()
		err = cs.RecvMsg(&grpc_health_v1.HealthCheckResponse{})
		if want == nil && err != io.EOF || want != nil && (status.Code(err) != status.Code(want) || status.Convert(err).Message() != status.Convert(want).Message()) {
			t.Errorf("unknown service call ended with %v, want %v", err, want)
		}
	}
	if n := errHandlerCalls.Load(); n != 0 {
		t.Errorf("the error handler was called %d times for calls that never opened a session", n)
	}
	if n := db.Stats().OpenConnections; n != opened {
		t.Errorf("%d connections open after the calls, %d before: a call without a session opened one", n, opened)
	}
}

// A server-streaming call whose commit fails after it sent messages:
// the client gets the messages, then the error status, never OK; and a
// server whose own deadline (not the client's) passes in the handler
// ends the stream with an error too.
func TestReview7ServerStreamMessagesThenFailedCommit(t *testing.T) {
	db, table := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	for _, tt := range []struct {
		id   int64
		code codes.Code
		text string
	}{
		{1000001, codes.Internal, "not saved"},
		{-1, codes.Aborted, "retry"},
		{1, codes.OK, ""},
	} {
		client := serve(t, &health{watch: func(ctx context.Context, send func() error) error {
			if err := send(); err != nil {
				return err
			}
			if err := insert(ctx, table, tt.id); err != nil {
				return err
			}
			return send()
		}}, grpc.StatsHandler(scopedgrpc.StatsHandler()), grpc.ChainStreamInterceptor(scopedgrpc.StreamServerInterceptor(
			scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(users))))
		stream, err := client.Watch(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{})
		msgs := 0
		for err == nil {
			if _, err = stream.Recv(); err == nil {
				msgs++
			}
		}
		if msgs != 2 {
			t.Errorf("id %d: %d messages, want 2", tt.id, msgs)
		}
		if tt.code == codes.OK {
			if err != io.EOF {
				t.Errorf("id %d: stream ended with %v, want io.EOF", tt.id, err)
			}
		} else if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("id %d: stream ended with %v, want %v %q", tt.id, err, tt.code, tt.text)
		}
		if got := slices.Contains(dbtest.IDs(t, db, table), tt.id); got != (tt.code == codes.OK) {
			t.Errorf("id %d: saved = %v", tt.id, got)
		}
		noConnsInUse(t, db)
	}
}

// A server-side cut of the call's context (an outer interceptor's
// timeout, a server shutting down: not the client going away) that lands
// while the COMMIT runs: the client, which is still there, gets OK if and
// only if the row was saved, or an answer that says the outcome is not
// known. The COMMIT is held by a deferred trigger waiting for an
// advisory lock the test holds, and let go after the cut.
func TestReview7ServerCutDuringTheCommit(t *testing.T) {
	db, table := openDB(t)
	ctx := dbtest.Ctx(t)
	const key = 7_202_612
	if _, err := db.ExecContext(ctx, fmt.Sprintf(`
CREATE FUNCTION %[1]s_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_xact_lock_shared(%[2]d);
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER %[1]s_hold AFTER INSERT ON %[1]s
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %[1]s_hold();`, table, key)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP FUNCTION "+table+"_hold() CASCADE") })
	users := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	cuts := make(chan context.CancelFunc, 1)
	cut := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		cuts <- cancel
		return h(ctx, req)
	}
	var next atomic.Int64
	client := serve(t, &health{check: func(ctx context.Context) error {
		return insert(ctx, table, next.Load())
	}}, grpc.ChainUnaryInterceptor(cut, scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(users))))

	for i := int64(1); i <= 6; i++ {
		next.Store(i)
		lock, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lock.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{})
			done <- err
		}()
		cancel := testkit.WaitFor(t, cuts, "the call")
		// Only this test's lock: other tests on the same server may have
		// a COMMIT waiting for an advisory lock of their own.
		testkit.Eventually(t, "the COMMIT waiting for the advisory lock", func() bool {
			var n int
			err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
				WHERE l.locktype = 'advisory' AND NOT l.granted AND l.classid = 0 AND l.objid = $1 AND l.objsubid = 1
				AND a.datname = current_database() AND a.query ILIKE 'commit%'`, key).Scan(&n)
			return err == nil && n == 1
		})
		cancel()
		if i%2 == 0 { // sometimes after the safety net had its turn
			runtime.Gosched()
		}
		if _, err := lock.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			t.Fatal(err)
		}
		_ = lock.Close()
		err = testkit.WaitFor(t, done, "the answer")
		saved := slices.Contains(dbtest.IDs(t, db, table), i)
		unknown := strings.Contains(status.Convert(err).Message(), "may have been saved")
		switch {
		case err == nil && !saved:
			t.Errorf("call %d: OK, but the row was not saved", i)
		case err != nil && saved && !unknown:
			t.Errorf("call %d: %v, but the row was saved", i, err)
		case err != nil && !saved && unknown:
			t.Logf("call %d: %v (not saved)", i, err)
		}
		noConnsInUse(t, db)
	}
}
