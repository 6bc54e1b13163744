package scopedconnect_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedconnect"
)

func TestBindSameTypeTwicePanics(t *testing.T) {
	a := scoped.New(func(context.Context) (*sql.Tx, error) { return nil, nil })
	b := scoped.New(func(context.Context) (*sql.Tx, error) { return nil, nil })
	for name, build := range map[string]func(...scopedconnect.Option){
		"interceptor": func(o ...scopedconnect.Option) { scopedconnect.NewInterceptor(o...) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				msg := fmt.Sprint(recover())
				if !strings.HasPrefix(msg, "scopedconnect: ") || !strings.Contains(msg, "*sql.Tx") {
					t.Errorf("panic = %q, want one naming the type *sql.Tx", msg)
				}
			}()
			build(scopedconnect.Bind(a), scopedconnect.Bind(b))
		})
	}
}

func TestBindDistinctTypes(t *testing.T) {
	a := scoped.New(func(context.Context) (*sql.Tx, error) { return nil, nil })
	b := scoped.New(func(context.Context) (*sql.Conn, error) { return nil, nil })
	scopedconnect.NewInterceptor(scopedconnect.Bind(a), scopedconnect.Bind(b)) // must not panic
}

func TestCommitModeString(t *testing.T) {
	for m, want := range map[scopedconnect.CommitMode]string{
		scopedconnect.Manual: "manual", scopedconnect.Autocommit: "autocommit", 7: "CommitMode(invalid)",
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
	scopedconnect.WithCommitMode(7)
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
	url := serve(t, &service{check: func(ctx context.Context, _ string) error {
		_, err := sessions.Current(ctx)
		return err
	}}, connect.WithInterceptors(scopedconnect.NewInterceptor(
		scopedconnect.WithCommitMode(scopedconnect.Autocommit),
		scopedconnect.WithErrorHandler(func(_ context.Context, err error) error {
			got = err
			return connect.NewError(connect.CodeUnavailable, errors.New("try again later"))
		}))))
	for _, c := range clients(t, url) {
		code, msg := c.check(context.Background(), "")
		if connect.Code(code) != connect.CodeUnavailable || msg != "try again later" {
			t.Errorf("%s: client got %v %q, want the error handler's unavailable", c.name, connect.Code(code), msg)
		}
		if !errors.Is(got, boom) || !strings.HasPrefix(got.Error(), "scopedconnect: ") {
			t.Errorf("%s: error handler got %v, want the commit error wrapped with the package prefix", c.name, got)
		}
		got = nil
	}
}

// TestHandCommitInAutocommit: a handler that committed by hand has ended
// the scope; the interceptor commits nothing more and the call succeeds.
func TestHandCommitInAutocommit(t *testing.T) {
	sessions, f := fakeSessions(nil)
	url := serve(t, &service{check: func(ctx context.Context, _ string) error {
		if _, err := sessions.Current(ctx); err != nil {
			return err
		}
		scope, _ := scoped.FromContext(ctx)
		return scope.Commit()
	}}, connect.WithInterceptors(scopedconnect.NewInterceptor(scopedconnect.WithCommitMode(scopedconnect.Autocommit))))
	if code, msg := clients(t, url)[1].check(context.Background(), ""); code != 0 {
		t.Fatalf("call failed: %v %s", connect.Code(code), msg)
	}
	if f.commits != 1 || f.rollbacks != 0 {
		t.Errorf("commits, rollbacks = %d, %d; want 1, 0", f.commits, f.rollbacks)
	}
}
