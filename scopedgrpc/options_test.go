package scopedgrpc_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedgrpc"
)

func TestBindSameTypeTwicePanics(t *testing.T) {
	a := scoped.New(func(context.Context) (*sql.Tx, error) { return nil, nil })
	b := scoped.New(func(context.Context) (*sql.Tx, error) { return nil, nil })
	for name, build := range map[string]func(...scopedgrpc.Option){
		"unary":  func(o ...scopedgrpc.Option) { scopedgrpc.UnaryServerInterceptor(o...) },
		"stream": func(o ...scopedgrpc.Option) { scopedgrpc.StreamServerInterceptor(o...) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				msg := fmt.Sprint(recover())
				if !strings.HasPrefix(msg, "scopedgrpc: ") || !strings.Contains(msg, "*sql.Tx") {
					t.Errorf("panic = %q, want one naming the type *sql.Tx", msg)
				}
			}()
			build(scopedgrpc.Bind(a), scopedgrpc.Bind(b))
		})
	}
}

func TestBindDistinctTypes(t *testing.T) {
	a := scoped.New(func(context.Context) (*sql.Tx, error) { return nil, nil })
	b := scoped.New(func(context.Context) (*sql.Conn, error) { return nil, nil })
	scopedgrpc.UnaryServerInterceptor(scopedgrpc.Bind(a), scopedgrpc.Bind(b)) // must not panic
}

func TestCommitModeString(t *testing.T) {
	for m, want := range map[scopedgrpc.CommitMode]string{
		scopedgrpc.Manual: "manual", scopedgrpc.Autocommit: "autocommit", 7: "CommitMode(invalid)",
	} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(m), got, want)
		}
	}
	defer func() {
		if r := recover(); r == nil {
			t.Error("WithCommitMode(7) did not panic")
		}
	}()
	scopedgrpc.WithCommitMode(7)
}

// fake is a session whose commit fails with commitErr (nil: succeeds) and
// that counts how it ended.
type fake struct{ commits, rollbacks int }

func fakeSessions(commitErr error) (*scoped.ScopedSession[*fake], *fake) {
	f := &fake{}
	return scoped.New(func(context.Context) (*fake, error) { return f, nil },
		scoped.WithCommit(func(context.Context, *fake) error { f.commits++; return commitErr }),
		scoped.WithRollback(func(context.Context, *fake) error { f.rollbacks++; return nil }),
		scoped.WithTeardownErrorHook(nil)), f
}

func TestWithErrorHandler(t *testing.T) {
	boom := errors.New("disk on fire")
	sessions, _ := fakeSessions(boom)
	var got error
	client := serve(t, &health{check: func(ctx context.Context) error {
		_, err := sessions.Current(ctx)
		return err
	}}, grpc.UnaryInterceptor(scopedgrpc.UnaryServerInterceptor(
		scopedgrpc.WithCommitMode(scopedgrpc.Autocommit),
		scopedgrpc.WithErrorHandler(func(_ context.Context, err error) error {
			got = err
			return status.Error(codes.Unavailable, "try again later")
		}))))
	_, err := client.Check(context.Background(), &grpc_health_v1.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "try again later" {
		t.Errorf("client got %v, want the error handler's Unavailable", err)
	}
	if !errors.Is(got, boom) || !strings.HasPrefix(got.Error(), "scopedgrpc: ") {
		t.Errorf("error handler got %v, want the commit error wrapped with the package prefix", got)
	}
}

// TestHandCommitInAutocommit: a handler that committed by hand has ended
// the scope; the interceptor commits nothing more and the call succeeds.
func TestHandCommitInAutocommit(t *testing.T) {
	sessions, f := fakeSessions(nil)
	client := serve(t, &health{check: func(ctx context.Context) error {
		if _, err := sessions.Current(ctx); err != nil {
			return err
		}
		scope, _ := scoped.FromContext(ctx)
		return scope.Commit()
	}}, grpc.UnaryInterceptor(scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit))))
	if _, err := client.Check(context.Background(), &grpc_health_v1.HealthCheckRequest{}); err != nil {
		t.Fatalf("call failed: %v", err)
	}
	if f.commits != 1 || f.rollbacks != 0 {
		t.Errorf("commits, rollbacks = %d, %d; want 1, 0", f.commits, f.rollbacks)
	}
}
