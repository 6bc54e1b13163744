package scoped_test

import (
	"context"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
)

// A tracker names the scopes and keyed sessions begun while it runs and
// not ended, with the file:line of the caller that began them.
func TestTrackerNamesWhatWasNotEnded(t *testing.T) {
	tr := scoped.Track()
	defer tr.Stop()
	_, ended := scoped.Begin(context.Background())
	_, leaked := scoped.Begin(context.Background()) // the leak
	_ = ended.Remove()
	type tenant struct{}
	keyed := scoped.New(func(context.Context) (*fakeConn, error) { return &fakeConn{name: "k"}, nil },
		scoped.WithScopeFunc(scoped.ContextValue(tenant{})), scoped.WithName("tenants"))
	if _, err := keyed.Current(context.WithValue(context.Background(), tenant{}, "t1")); err != nil { // the keyed leak
		t.Fatal(err)
	}
	// A scope ended through Run, and one ended by its parent, are not leaks.
	_ = scoped.Run(context.Background(), func(context.Context) error { return nil })
	pctx, parent := scoped.Begin(context.Background())
	scoped.Begin(pctx)
	_ = parent.Remove()

	open := tr.Open()
	if len(open) != 2 || open[0].What != "scope" || open[1].What != "tenants" {
		t.Fatalf("open %v, want the leaked scope then the keyed session", open)
	}
	for _, l := range open {
		if !strings.Contains(l.Where, "leak_test.go:") {
			t.Fatalf("%v does not name this file", l)
		}
	}
	_ = leaked.Remove()
	_ = keyed.Close()
	if open := tr.Open(); len(open) != 0 {
		t.Fatalf("after ending them: %v", open)
	}
}
