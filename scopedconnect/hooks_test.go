package scopedconnect_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	_ "github.com/go-sql-driver/mysql"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedconnect"
	"github.com/go-scoped/scoped/scopedsql"
)

// With Handler, a call's unit hooks run once the client has the whole
// answer (the response and its status, every message of a stream): the
// client gets it while the hook is still blocked. A call that committed
// runs its OnCommit hook, which sees the row saved; one that failed runs
// its OnRollback hook, not the OnCommit one, and the row is not there.
// Hooks that panic first change no answer and stop no other hook. Every
// protocol and client, unary and streaming, PostgreSQL and MariaDB.
func TestHooksRunAfterTheClientHasTheResponse(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := newProbe(t, s, "connect_hooks")
		logged := captureLog(t)
		url := serveWrapped(t, scopedconnect.Handler, p.service(), connect.WithInterceptors(scopedconnect.NewInterceptor(
			scopedconnect.WithCommitMode(scopedconnect.Autocommit), scopedconnect.Bind(p.txs))))
		id := int64(0)
		for _, c := range clients(t, url) {
			for _, stream := range []bool{false, true} {
				for _, fail := range []bool{false, true} {
					id++
					name := fmt.Sprintf("%s stream=%v fail=%v", c.name, stream, fail)
					arg := strconv.FormatInt(id, 10)
					want := hookRun{"commit", id, true}
					wantCode := 0
					if fail {
						arg += " fail"
						want = hookRun{"rollback", id, false}
						wantCode = int(connect.CodeFailedPrecondition)
					}
					type answer struct{ msgs, code int }
					done := make(chan answer, 1)
					wantMsgs := 0
					go func() {
						var a answer
						if stream {
							a.msgs, a.code, _ = c.watch(dbtest.Ctx(t), arg)
						} else {
							a.code, _ = c.check(dbtest.Ctx(t), arg)
						}
						done <- a
					}()
					if stream {
						wantMsgs = 2
					}
					got := testkit.WaitFor(t, done, name+": the client's answer while the hook waits")
					if got != (answer{wantMsgs, wantCode}) {
						t.Errorf("%s: client got %d messages and code %d, want %d and %d", name, got.msgs, got.code, wantMsgs, wantCode)
					}
					if run := testkit.WaitFor(t, p.started, name+": the hook to start"); run != want {
						t.Errorf("%s: hook ran %+v, want %+v", name, run, want)
					}
					p.release <- struct{}{} // the hook is waiting for it
					testkit.WaitFor(t, p.finished, name+": the hook to finish")
				}
			}
		}
		if n := strings.Count(logged.String(), "unit hook panicked"); n != int(id) {
			t.Errorf("%d panicking hooks reported, want %d: %s", n, id, logged)
		}
	})
}

// Without Handler the hooks still run, at the commit point: before the
// client has its answer. A blocked hook holds the answer back.
func TestHooksRunBeforeTheResponseWithoutHandler(t *testing.T) {
	p := newProbe(t, dbtest.Postgres(t), "connect_hooks_before")
	_ = captureLog(t)
	url := serve(t, p.service(), connect.WithInterceptors(scopedconnect.NewInterceptor(
		scopedconnect.WithCommitMode(scopedconnect.Autocommit), scopedconnect.Bind(p.txs))))
	c := clients(t, url)[1] // connect
	done := make(chan int, 1)
	go func() {
		code, _ := c.check(dbtest.Ctx(t), "1")
		done <- code
	}()
	if run := testkit.WaitFor(t, p.started, "the hook to start"); run != (hookRun{"commit", 1, true}) {
		t.Errorf("hook ran %+v, want the commit hook with the row saved", run)
	}
	select {
	case code := <-done:
		t.Errorf("the client got its answer (code %d) while the hook was blocked", code)
	default:
	}
	p.release <- struct{}{}
	testkit.WaitFor(t, p.finished, "the hook to finish")
	if code := testkit.WaitFor(t, done, "the client's answer"); code != 0 {
		t.Errorf("client got code %d, want OK", code)
	}
}

// A hookRun is what a blocking hook saw when it started: its kind, the
// call's id and whether the row of that id was saved.
type hookRun struct {
	kind  string
	id    int64
	saved bool
}

// probe serves calls that insert a row and register hooks that report
// when they start and then wait for the test.
type probe struct {
	db       *sql.DB
	s        dbtest.Server
	table    string
	txs      *scoped.ScopedSession[*sql.Tx]
	started  chan hookRun
	release  chan struct{}
	finished chan struct{}
	ended    chan struct{} // closed when the test ends: a failed test's hooks return
}

// newProbe opens s and makes a fresh table; on PostgreSQL one whose
// COMMIT fails for a negative id (dbtest.CreateCommitFailureTable).
func newProbe(t *testing.T, s dbtest.Server, prefix string) *probe {
	t.Helper()
	db, err := sql.Open(s.Driver, s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	table := dbtest.CreateIDTable
	if s.Name == "postgres" {
		table = dbtest.CreateCommitFailureTable
	}
	p := &probe{db: db, s: s, table: table(t, db, prefix),
		txs:     scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil)),
		started: make(chan hookRun, 1), release: make(chan struct{}), finished: make(chan struct{}, 1),
		ended: make(chan struct{})}
	t.Cleanup(func() { close(p.ended) }) // before the table and db go
	return p
}

// block returns a hook of kind for the call of id: it reports what it
// sees, then waits for the test's release.
func (p *probe) block(kind string, id int64) func(context.Context) {
	return func(ctx context.Context) {
		var n int
		err := p.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+p.table+" WHERE id = "+strconv.FormatInt(id, 10)).Scan(&n)
		if err != nil {
			kind += ": " + err.Error()
		}
		select {
		case p.started <- hookRun{kind, id, n == 1}:
		case <-p.ended:
			return
		}
		select {
		case <-p.release:
		case <-p.ended:
			return
		}
		select {
		case p.finished <- struct{}{}:
		case <-p.ended:
		}
	}
}

// handle runs a call of arg "<id>[ fail]": it inserts id, registers a
// panicking hook of each kind and then a blocking one, and fails when
// told to.
func (p *probe) handle(ctx context.Context, arg string) error {
	idText, fail := strings.CutSuffix(arg, " fail")
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	if err := p.insert(ctx, id); err != nil {
		return err
	}
	panicking := func(context.Context) { panic("a hook that panics") }
	for _, err := range []error{
		scoped.OnCommit(ctx, panicking), scoped.OnRollback(ctx, panicking),
		scoped.OnCommit(ctx, p.block("commit", id)), scoped.OnRollback(ctx, p.block("rollback", id)),
	} {
		if err != nil {
			return err
		}
	}
	if fail {
		return connect.NewError(connect.CodeFailedPrecondition, errors.New("wrote, then refused"))
	}
	return nil
}

// insert inserts id in the call's transaction.
func (p *probe) insert(ctx context.Context, id int64) error {
	tx, err := p.txs.Current(ctx)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, p.s.InsertID(p.table), id)
	return err
}

func (p *probe) service() *service {
	return &service{
		check: p.handle,
		watch: func(ctx context.Context, arg string, send func() error) error {
			for range 2 {
				if err := send(); err != nil {
					return err
				}
			}
			return p.handle(ctx, arg)
		},
	}
}

// serveWrapped serves s as serve does, its mux wrapped by wrap.
func serveWrapped(t testing.TB, wrap func(http.Handler) http.Handler, s *service, opts ...connect.HandlerOption) string {
	t.Helper()
	inner := serveMux(s, opts...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: wrap(inner), Protocols: &protocols, ReadHeaderTimeout: bound}
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

// serveMux is the mux serve builds for s.
func serveMux(s *service, opts ...connect.HandlerOption) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(checkProcedure, connect.NewUnaryHandler(checkProcedure,
		func(ctx context.Context, req *connect.Request[checkReq]) (*connect.Response[checkResp], error) {
			if err := s.check(ctx, req.Msg.Service); err != nil {
				return nil, err
			}
			return connect.NewResponse(&checkResp{}), nil
		}, opts...))
	mux.Handle(watchProcedure, connect.NewServerStreamHandler(watchProcedure,
		func(ctx context.Context, req *connect.Request[checkReq], stream *connect.ServerStream[checkResp]) error {
			return s.watch(ctx, req.Msg.Service, func() error { return stream.Send(&checkResp{}) })
		}, opts...))
	return mux
}

// captureLog points slog's default at a buffer for the test.
func captureLog(t *testing.T) *syncBuffer {
	buf := &syncBuffer{}
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return buf
}

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
