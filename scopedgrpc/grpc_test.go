package scopedgrpc_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedgrpc"
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
func finished() (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor, <-chan error) {
	ch := make(chan error, 16)
	unary := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		ch <- err
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		ch <- err
		return err
	}
	return unary, stream, ch
}

func wait(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(bound):
		t.Fatal("the server did not finish the call")
		return nil
	}
}

// recovered is the recovery interceptors' handler: a status the test
// can tell from any other Internal.
var recovered = recovery.WithRecoveryHandler(func(p any) error {
	return status.Errorf(codes.Internal, "recovered: %v", p)
})

// contextEnded reports whether the server ended a call with the status of
// a passed deadline or a cancellation. Which of the two depends on whether
// the server's deadline timer or the client's RST_STREAM came first.
func contextEnded(err error) bool {
	c := status.Code(err)
	return (c == codes.DeadlineExceeded || c == codes.Canceled) && strings.Contains(err.Error(), "scopedgrpc:")
}

// unknownCommit is a commit that rolls back but reports that the outcome
// is unknown, as an adapter does when the connection is lost during COMMIT.
func unknownCommit(_ context.Context, tx *sql.Tx) error {
	_ = tx.Rollback()
	return fmt.Errorf("connection lost during COMMIT: %w", scoped.ErrCommitUnknown)
}

func TestUnaryAutocommit(t *testing.T) {
	db, table := openDB(t)
	tests := []struct {
		name     string
		id       int64
		handler  func(ctx context.Context) error
		commit   func(context.Context, *sql.Tx) error // nil: the default
		timeout  time.Duration
		wantCode codes.Code
		wantMsg  string
		wantRow  bool
	}{
		{name: "nil commits", id: 1, wantCode: codes.OK, wantRow: true},
		{name: "error rolls back", id: 2, wantCode: codes.FailedPrecondition,
			handler: func(context.Context) error { return status.Error(codes.FailedPrecondition, "no") }},
		{name: "serialization failure at commit", id: -3, wantCode: codes.Aborted, wantMsg: "retry the call"},
		{name: "other failure at commit", id: 1000004, wantCode: codes.Internal, wantMsg: "were not saved"},
		{name: "unknown commit outcome", id: 5, commit: unknownCommit, wantCode: codes.Internal, wantMsg: "may have been saved"},
		{name: "panic rolls back", id: 6, wantCode: codes.Internal, wantMsg: "recovered: handler bug",
			handler: func(context.Context) error { panic("handler bug") }},
		{name: "deadline rolls back", id: 7, timeout: 300 * time.Millisecond, wantCode: codes.DeadlineExceeded,
			handler: func(ctx context.Context) error { <-ctx.Done(); return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []scoped.Option
			if tt.commit != nil {
				opts = append(opts, scoped.WithCommit(tt.commit))
			}
			users := scoped.New(scopedsql.Tx(db, nil), append(opts, scoped.WithTeardownErrorHook(nil))...)
			fu, _, done := finished()
			client := serve(t, &health{check: func(ctx context.Context) error {
				if err := insert(ctx, table, tt.id); err != nil {
					return err
				}
				if tt.handler != nil {
					return tt.handler(ctx)
				}
				return nil
			}}, grpc.ChainUnaryInterceptor(fu, recovery.UnaryServerInterceptor(recovered),
				scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(users))))

			ctx := dbtest.Ctx(t)
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			_, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{})
			st := status.Convert(err)
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
				t.Fatalf("client got %v %q, want %v containing %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			serverErr := wait(t, done)
			if tt.timeout > 0 && !contextEnded(serverErr) {
				t.Errorf("server ended the call with %v, want the interceptor's DeadlineExceeded or Canceled", serverErr)
			}
			got := slices.Contains(dbtest.IDs(t, db, table), tt.id)
			if got != tt.wantRow {
				t.Errorf("row %d saved = %v, want %v", tt.id, got, tt.wantRow)
			}
			if n := db.Stats().InUse; n != 0 {
				t.Errorf("%d connections still in use after the call", n)
			}
		})
	}
}

func TestUnaryManual(t *testing.T) {
	db, table := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil))
	client := serve(t, &health{check: func(ctx context.Context) error {
		if err := insert(ctx, table, 1); err != nil {
			return err
		}
		if err := users.Commit(ctx); err != nil {
			return err
		}
		return insert(ctx, table, 2) // a new transaction, never committed
	}}, grpc.UnaryInterceptor(scopedgrpc.UnaryServerInterceptor(scopedgrpc.Bind(users))))
	if _, err := client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1}) {
		t.Errorf("ids = %v, want [1]: Manual saves what the handler committed, nothing else", got)
	}
	if n := db.Stats().InUse; n != 0 {
		t.Errorf("%d connections still in use after the call", n)
	}
}

func TestUnaryCommitPolicy(t *testing.T) {
	db, table := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil))
	var next int64
	client := serve(t, &health{check: func(ctx context.Context) error {
		next++
		if err := insert(ctx, table, next); err != nil {
			return err
		}
		if next == 1 {
			return status.Error(codes.NotFound, "recorded a miss")
		}
		return nil
	}}, grpc.UnaryInterceptor(scopedgrpc.UnaryServerInterceptor(
		scopedgrpc.WithCommitPolicy(func(c codes.Code) bool { return c == codes.NotFound }), scopedgrpc.Bind(users))))
	ctx := dbtest.Ctx(t)
	if _, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{}); status.Code(err) != codes.NotFound {
		t.Fatalf("first call: %v, want the handler's NotFound", err)
	}
	if _, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1}) {
		t.Errorf("ids = %v, want [1]: the policy commits NotFound only", got)
	}
}

// TestClientGoneRollsBackAtOnce checks the safety net: when the client
// cancels, the call's transaction is rolled back while the handler is
// still running, not only when it returns.
func TestClientGoneRollsBackAtOnce(t *testing.T) {
	db, table := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil))
	inserted, release := make(chan struct{}), make(chan struct{})
	rolledBack := make(chan error, 1)
	fu, _, done := finished()
	client := serve(t, &health{check: func(ctx context.Context) error {
		if err := insert(ctx, table, 1); err != nil {
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
	}}, grpc.ChainUnaryInterceptor(fu, scopedgrpc.UnaryServerInterceptor(
		scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(users))))

	ctx, cancel := context.WithCancel(dbtest.Ctx(t))
	callErr := make(chan error, 1)
	go func() {
		_, err := client.Check(ctx, &grpc_health_v1.HealthCheckRequest{})
		callErr <- err
	}()
	<-inserted
	cancel()
	if err := <-rolledBack; !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("the scope was not ended while the handler ran: %v", err)
	}
	// Err is set when the teardown starts; the rollback may still be on
	// its way to the server.
	deadline := time.Now().Add(bound)
	for db.Stats().InUse != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := db.Stats().InUse; n != 0 {
		t.Errorf("%d connections still in use while the handler waits: the transaction was not rolled back", n)
	}
	close(release)
	if err := <-callErr; status.Code(err) != codes.Canceled {
		t.Errorf("client got %v, want Canceled", err)
	}
	if err := wait(t, done); status.Code(err) != codes.Canceled {
		t.Errorf("server ended the call with %v, want Canceled", err)
	}
	if got := dbtest.IDs(t, db, table); len(got) != 0 {
		t.Errorf("ids = %v, want none", got)
	}
}

func TestStreamAutocommit(t *testing.T) {
	db, table := openDB(t)
	tests := []struct {
		name     string
		id       int64
		panics   bool
		wantCode codes.Code
		wantRow  bool
	}{
		{name: "nil commits", id: 1, wantCode: codes.OK, wantRow: true},
		{name: "serialization failure at commit", id: -2, wantCode: codes.Aborted},
		{name: "other failure at commit", id: 1000003, wantCode: codes.Internal},
		{name: "panic rolls back", id: 4, panics: true, wantCode: codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
			_, fs, done := finished()
			client := serve(t, &health{watch: func(ctx context.Context, send func() error) error {
				if err := insert(ctx, table, tt.id); err != nil {
					return err
				}
				for range 2 {
					if err := send(); err != nil {
						return err
					}
				}
				if tt.panics {
					panic("handler bug")
				}
				return nil
			}}, grpc.ChainStreamInterceptor(fs, recovery.StreamServerInterceptor(recovered),
				scopedgrpc.StreamServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(users))))

			stream, err := client.Watch(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			msgs := 0
			for {
				if _, err = stream.Recv(); err != nil {
					break
				}
				msgs++
			}
			if msgs != 2 {
				t.Errorf("client got %d messages, want 2 before the status", msgs)
			}
			if tt.wantCode == codes.OK {
				if err != io.EOF {
					t.Errorf("stream ended with %v, want io.EOF", err)
				}
			} else if status.Code(err) != tt.wantCode {
				t.Errorf("stream ended with %v, want %v", err, tt.wantCode)
			}
			wait(t, done)
			if got := slices.Contains(dbtest.IDs(t, db, table), tt.id); got != tt.wantRow {
				t.Errorf("row %d saved = %v, want %v", tt.id, got, tt.wantRow)
			}
			if n := db.Stats().InUse; n != 0 {
				t.Errorf("%d connections still in use after the call", n)
			}
		})
	}
}

func TestStreamDeadlineRollsBack(t *testing.T) {
	db, table := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil))
	_, fs, done := finished()
	client := serve(t, &health{watch: func(ctx context.Context, send func() error) error {
		if err := insert(ctx, table, 1); err != nil {
			return err
		}
		if err := send(); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}}, grpc.ChainStreamInterceptor(fs, scopedgrpc.StreamServerInterceptor(
		scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(users))))
	ctx, cancel := context.WithTimeout(dbtest.Ctx(t), 300*time.Millisecond)
	defer cancel()
	stream, err := client.Watch(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("stream ended with %v, want DeadlineExceeded", err)
	}
	if err := wait(t, done); !contextEnded(err) {
		t.Errorf("server ended the call with %v, want the interceptor's DeadlineExceeded or Canceled", err)
	}
	if got := dbtest.IDs(t, db, table); len(got) != 0 {
		t.Errorf("ids = %v, want none", got)
	}
}
