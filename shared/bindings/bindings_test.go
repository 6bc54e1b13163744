package bindings_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedtest"
	"github.com/go-scoped/scoped/shared/bindings"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(scopedtest.CheckScopesM(m))
}

type txA struct{}
type txB struct{}

func newSession[S any]() *scoped.ScopedSession[S] {
	return scoped.New(func(context.Context) (S, error) { var s S; return s, nil },
		scoped.WithRollback(func(context.Context, S) error { return nil }))
}

func TestSameScopedSessionTwiceIsKeptOnce(t *testing.T) {
	a := newSession[*txA]()
	list := bindings.Add("pkg", nil, bindings.Of(a))
	list = bindings.Add("pkg", list, bindings.Of(a))
	if len(list) != 1 {
		t.Fatalf("len = %d after binding one ScopedSession twice, want 1", len(list))
	}
	if r, ok := scoped.Bound[*txA](bindings.Apply(context.Background(), list)); !ok || r != a {
		t.Errorf("Bound = %p, %v, want %p, true", r, ok, a)
	}
}

func TestTwoScopedSessionsOfOneTypePanic(t *testing.T) {
	list := bindings.Add("scopedgrpc", nil, bindings.Of(newSession[*txA]()))
	defer func() {
		msg := fmt.Sprint(recover())
		for _, want := range []string{"scopedgrpc: two Bind options for session type *bindings_test.txA", "own session type", "Current(ctx)"} {
			if !strings.Contains(msg, want) {
				t.Errorf("panic %q, want it to contain %q", msg, want)
			}
		}
		if !strings.HasPrefix(msg, "scopedgrpc: ") {
			t.Errorf("panic %q, want the caller's package prefix", msg)
		}
	}()
	bindings.Add("scopedgrpc", list, bindings.Of(newSession[*txA]()))
}

func TestApplyBindsEveryType(t *testing.T) {
	a, b := newSession[*txA](), newSession[*txB]()
	list := bindings.Add("pkg", bindings.Add("pkg", nil, bindings.Of(a)), bindings.Of(b))
	if len(list) != 2 {
		t.Fatalf("len = %d for two session types, want 2", len(list))
	}
	ctx := bindings.Apply(context.Background(), list)
	if r, ok := scoped.Bound[*txA](ctx); !ok || r != a {
		t.Errorf("Bound[*txA] = %p, %v, want %p, true", r, ok, a)
	}
	if r, ok := scoped.Bound[*txB](ctx); !ok || r != b {
		t.Errorf("Bound[*txB] = %p, %v, want %p, true", r, ok, b)
	}
}

func TestApplyOfNothingIsTheContext(t *testing.T) {
	ctx := context.Background()
	if got := bindings.Apply(ctx, nil); got != ctx {
		t.Errorf("Apply(ctx, nil) = %v, want ctx itself", got)
	}
	if _, ok := scoped.Bound[*txA](ctx); ok {
		t.Error("Bound[*txA] found a binding in a bare context")
	}
}
