package scopedgrpc_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

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
