package scopedconnect_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

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
