package scopedconnect_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedconnect"
	"github.com/go-scoped/scoped/scopedsql"
)

// insert inserts id through the call's bound *sql.Tx.
func insert(ctx context.Context, table string, id int64) error {
	tx, err := scoped.Current[*sql.Tx](ctx)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id)
	return err
}

// finished is an outermost interceptor that reports the end of each call
// on the server, after every inner interceptor has returned.
type finished chan error

func (f finished) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		resp, err := next(ctx, req)
		f <- err
		return resp, err
	}
}

func (f finished) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (f finished) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		f <- err
		return err
	}
}

func (f finished) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-f:
		return err
	case <-time.After(bound):
		t.Fatal("the server did not finish the call")
		return nil
	}
}

// recovered is connect's recover option: an error the test can tell from
// any other internal error.
var recovered = connect.WithRecover(func(_ context.Context, _ connect.Spec, _ http.Header, p any) error {
	return connect.NewError(connect.CodeInternal, fmt.Errorf("recovered: %v", p))
})

// act runs the handler side of a test call: arg is "<id> <action>"; it
// inserts id, then acts.
func act(ctx context.Context, table, arg string) error {
	idText, action, _ := strings.Cut(arg, " ")
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	if err := insert(ctx, table, id); err != nil {
		return err
	}
	switch action {
	case "fail":
		return connect.NewError(connect.CodeFailedPrecondition, errors.New("wrote, then refused"))
	case "panic":
		panic("handler bug")
	case "wait":
		<-ctx.Done()
	}
	return nil
}

// unknownCommit is a commit that rolls back but reports that the outcome
// is unknown, as an adapter does when the connection is lost during COMMIT.
func unknownCommit(_ context.Context, tx *sql.Tx) error {
	_ = tx.Rollback()
	return fmt.Errorf("connection lost during COMMIT: %w", scoped.ErrCommitUnknown)
}

// TestAutocommitAllProtocols calls one handler through every client and
// protocol. The "error rolls back" case is the one scopedhttp got wrong:
// over gRPC and gRPC-Web the failed call is an HTTP 200.
func TestAutocommitAllProtocols(t *testing.T) {
	db, table := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	unknown := scoped.New(scopedsql.Tx(db, nil), scoped.WithCommit(unknownCommit), scoped.WithTeardownErrorHook(nil))
	done := make(finished, 16)
	opts := []scopedconnect.Option{scopedconnect.WithCommitMode(scopedconnect.Autocommit), scopedconnect.Bind(users)}
	url := serve(t, &service{
		check: func(ctx context.Context, arg string) error { return act(ctx, table, arg) },
		watch: func(ctx context.Context, arg string, send func() error) error {
			for range 2 {
				if err := send(); err != nil {
					return err
				}
			}
			return act(ctx, table, arg)
		},
	}, connect.WithInterceptors(done), recovered, connect.WithInterceptors(scopedconnect.NewInterceptor(opts...)))
	urlUnknown := serve(t, &service{
		check: func(ctx context.Context, arg string) error { return act(ctx, table, arg) },
	}, connect.WithInterceptors(done), connect.WithInterceptors(scopedconnect.NewInterceptor(
		scopedconnect.WithCommitMode(scopedconnect.Autocommit), scopedconnect.Bind(unknown))))
	clientsUnknown := map[string]client{}
	for _, c := range clients(t, urlUnknown) {
		clientsUnknown[c.name] = c
	}

	var ids atomic.Int64
	tests := []struct {
		name    string
		action  string
		bad     bool // an id the trigger fails at COMMIT
		badCode bool // ... with a non-serialization error
		unknown bool
		timeout time.Duration
		code    connect.Code
		msg     string
		saved   bool
	}{
		{name: "nil commits", code: scopedconnect.OK, saved: true},
		{name: "error rolls back", action: "fail", code: connect.CodeFailedPrecondition, msg: "wrote, then refused"},
		{name: "serialization failure at commit", bad: true, code: connect.CodeAborted, msg: "retry the call"},
		{name: "other failure at commit", bad: true, badCode: true, code: connect.CodeInternal, msg: "were not saved"},
		{name: "unknown commit outcome", unknown: true, code: connect.CodeInternal, msg: "may have been saved"},
		{name: "panic rolls back", action: "panic", code: connect.CodeInternal, msg: "recovered: handler bug"},
		{name: "deadline rolls back", action: "wait", timeout: 300 * time.Millisecond, code: connect.CodeDeadlineExceeded},
	}
	for _, c := range clients(t, url) {
		t.Run(c.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					id := ids.Add(1)
					if tt.bad {
						id = -id
						if tt.badCode {
							id = 1000000 - id
						}
					}
					cl := c
					if tt.unknown {
						cl = clientsUnknown[c.name]
					}
					ctx := dbtest.Ctx(t)
					if tt.timeout > 0 {
						var cancel context.CancelFunc
						ctx, cancel = context.WithTimeout(ctx, tt.timeout)
						defer cancel()
					}
					code, msg := cl.check(ctx, strings.TrimSpace(fmt.Sprint(id, " ", tt.action)))
					if connect.Code(code) != tt.code || !strings.Contains(msg, tt.msg) {
						t.Errorf("client got %v %q, want %v containing %q", connect.Code(code), msg, tt.code, tt.msg)
					}
					done.wait(t)
					if got := slices.Contains(dbtest.IDs(t, db, table), id); got != tt.saved {
						t.Errorf("row %d saved = %v, want %v", id, got, tt.saved)
					}
					if n := db.Stats().InUse; n != 0 {
						t.Errorf("%d connections still in use after the call", n)
					}
				})
			}
			t.Run("stream", func(t *testing.T) {
				for _, tt := range tests {
					if tt.unknown {
						continue
					}
					t.Run(tt.name, func(t *testing.T) {
						id := ids.Add(1)
						if tt.bad {
							id = -id
							if tt.badCode {
								id = 1000000 - id
							}
						}
						ctx := dbtest.Ctx(t)
						if tt.timeout > 0 {
							var cancel context.CancelFunc
							ctx, cancel = context.WithTimeout(ctx, tt.timeout)
							defer cancel()
						}
						n, code, msg := c.watch(ctx, strings.TrimSpace(fmt.Sprint(id, " ", tt.action)))
						if tt.timeout > 0 {
							// What a client reports when its own deadline cuts a
							// stream short is the client library's business (connect
							// v1.11's says invalid_argument "incomplete envelope");
							// what matters is that the server rolled back.
							err := done.wait(t)
							if c := connect.CodeOf(err); (c != connect.CodeDeadlineExceeded && c != connect.CodeCanceled) ||
								!strings.Contains(err.Error(), "scopedconnect:") {
								t.Errorf("server ended the stream with %v, want the interceptor's deadline_exceeded or canceled", err)
							}
							if slices.Contains(dbtest.IDs(t, db, table), id) {
								t.Errorf("row %d saved after the deadline", id)
							}
							return
						}
						if n != 2 {
							t.Errorf("client got %d messages, want 2 before the end of the stream", n)
						}
						if connect.Code(code) != tt.code || !strings.Contains(msg, tt.msg) {
							t.Errorf("stream ended with %v %q, want %v containing %q", connect.Code(code), msg, tt.code, tt.msg)
						}
						done.wait(t)
						if got := slices.Contains(dbtest.IDs(t, db, table), id); got != tt.saved {
							t.Errorf("row %d saved = %v, want %v", id, got, tt.saved)
						}
					})
				}
			})
		})
	}
}

func TestManual(t *testing.T) {
	db, table := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil))
	url := serve(t, &service{check: func(ctx context.Context, _ string) error {
		if err := insert(ctx, table, 1); err != nil {
			return err
		}
		if err := users.Commit(ctx); err != nil {
			return err
		}
		return insert(ctx, table, 2) // a new transaction, never committed
	}}, connect.WithInterceptors(scopedconnect.NewInterceptor(scopedconnect.Bind(users))))
	if code, msg := clients(t, url)[1].check(dbtest.Ctx(t), ""); code != 0 {
		t.Fatalf("call failed: %v %s", connect.Code(code), msg)
	}
	if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1}) {
		t.Errorf("ids = %v, want [1]: Manual saves what the handler committed, nothing else", got)
	}
	if n := db.Stats().InUse; n != 0 {
		t.Errorf("%d connections still in use after the call", n)
	}
}

func TestCommitPolicy(t *testing.T) {
	db, table := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil))
	var seen []connect.Code
	url := serve(t, &service{check: func(ctx context.Context, arg string) error { return act(ctx, table, arg) }},
		connect.WithInterceptors(scopedconnect.NewInterceptor(scopedconnect.Bind(users),
			scopedconnect.WithCommitPolicy(func(c connect.Code) bool {
				seen = append(seen, c)
				return c == connect.CodeFailedPrecondition
			}))))
	cl := clients(t, url)[1]
	ctx := dbtest.Ctx(t)
	if code, _ := cl.check(ctx, "1 fail"); connect.Code(code) != connect.CodeFailedPrecondition {
		t.Fatalf("first call: %v, want the handler's FailedPrecondition", connect.Code(code))
	}
	if code, msg := cl.check(ctx, "2"); code != 0 {
		t.Fatalf("second call: %v %s", connect.Code(code), msg)
	}
	if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1}) {
		t.Errorf("ids = %v, want [1]: the policy commits FailedPrecondition only", got)
	}
	if want := []connect.Code{connect.CodeFailedPrecondition, scopedconnect.OK}; !slices.Equal(seen, want) {
		t.Errorf("policy saw %v, want %v", seen, want)
	}
}

// TestClientGoneRollsBackAtOnce checks the safety net under each
// protocol: when the client cancels, the call's transaction is rolled
// back while the handler is still running.
func TestClientGoneRollsBackAtOnce(t *testing.T) {
	db, table := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil))
	var inserted, release chan struct{}
	var rolledBack chan error
	done := make(finished, 1)
	url := serve(t, &service{check: func(ctx context.Context, arg string) error {
		id, _ := strconv.ParseInt(arg, 10, 64)
		if err := insert(ctx, table, id); err != nil {
			return err
		}
		close(inserted)
		<-ctx.Done()
		scope, _ := scoped.FromContext(ctx)
		deadline := time.Now().Add(bound)
		for scope.Err() == nil && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		rolledBack <- scope.Err()
		<-release
		return nil
	}}, connect.WithInterceptors(done, scopedconnect.NewInterceptor(
		scopedconnect.WithCommitMode(scopedconnect.Autocommit), scopedconnect.Bind(users))))
	for i, c := range clients(t, url) {
		t.Run(c.name, func(t *testing.T) {
			inserted, release, rolledBack = make(chan struct{}), make(chan struct{}), make(chan error, 1)
			ctx, cancel := context.WithCancel(dbtest.Ctx(t))
			defer cancel()
			callDone := make(chan struct{})
			go func() {
				defer close(callDone)
				c.check(ctx, strconv.Itoa(i+1))
			}()
			<-inserted
			cancel()
			if err := <-rolledBack; !errors.Is(err, scoped.ErrScopeClosed) {
				t.Errorf("the scope was not ended while the handler ran: %v", err)
			}
			// Err is set when the teardown starts; the rollback may still
			// be on its way to the server.
			deadline := time.Now().Add(bound)
			for db.Stats().InUse != 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if n := db.Stats().InUse; n != 0 {
				t.Errorf("%d connections in use while the handler waits: the transaction was not rolled back", n)
			}
			close(release)
			<-callDone
			if err := done.wait(t); connect.CodeOf(err) != connect.CodeCanceled {
				t.Errorf("server ended the call with %v, want Canceled", err)
			}
			if got := dbtest.IDs(t, db, table); len(got) != 0 {
				t.Errorf("ids = %v, want none", got)
			}
		})
	}
}
