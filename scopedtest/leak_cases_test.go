package scopedtest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedtest"
)

type leakConn struct{}

func (leakConn) Close() error { return nil }

// CheckScopes names the user's line, not the package's, for a keyed
// session created through the package-level scoped.Current, a Detach and
// a Detach inside a Run; and a scope ended on another goroutine as the
// check starts is not reported.
func TestCheckScopesNamesTheCallersLineAndWaitsForEndsElsewhere(t *testing.T) {
	ft := &dbtest.FakeTB{TB: t}
	scopedtest.CheckScopes(ft)
	type tenant struct{}
	keyed := scoped.New(func(context.Context) (leakConn, error) { return leakConn{}, nil },
		scoped.WithScopeFunc(scoped.ContextValue(tenant{})), scoped.WithName("tenants"))
	kctx := scoped.Bind(context.WithValue(context.Background(), tenant{}, 1), keyed)
	if _, err := scoped.Current[leakConn](kctx); err != nil { // line A
		t.Fatal(err)
	}
	_, detached := scoped.Detach(context.Background()) // line B
	var inner *scoped.Scope
	_ = scoped.Run(context.Background(), func(ctx context.Context) error {
		_, inner = scoped.Detach(ctx) // line C
		return nil
	})
	// Ended elsewhere, once the check has begun.
	_, ended := scoped.Begin(context.Background())
	start := make(chan struct{})
	go func() { <-start; _ = ended.Remove() }()
	close(start)
	errs := ft.End()
	_ = detached.Remove()
	_ = inner.Remove()
	_ = keyed.Close()

	if len(errs) != 1 {
		t.Fatalf("reported %q", errs)
	}
	lines := strings.Split(errs[0], "\n")[1:]
	want := []string{"tenants begun at", "scope begun at", "scope begun at"}
	if len(lines) != len(want) {
		t.Fatalf("reported %q, want the keyed session and two detached scopes", errs[0])
	}
	for i, l := range lines {
		if !strings.Contains(l, want[i]) || !strings.Contains(l, "leak_cases_test.go:") {
			t.Fatalf("line %q, want %q at this file", l, want[i])
		}
	}
}
