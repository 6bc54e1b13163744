package scoped_test

import (
	"context"
	"testing"

	"github.com/go-scoped/scoped"
)

// BenchmarkScopeNet measures a used scope (Begin, Current, Remove) with
// and without the safety net, against the hand-written helper: Net=none
// begins on a context that is never cancelled (nothing to watch),
// Net=off uses BeginWithoutSafetyNet on a cancellable one, Net=on uses
// Begin on a cancellable one (one context.AfterFunc registration).
func BenchmarkScopeNet(b *testing.B) {
	r := scoped.New(newBenchTx)
	cancellable, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, c := range []struct {
		name  string
		ctx   context.Context
		begin func(context.Context) (context.Context, *scoped.Scope)
	}{
		{"Net=none", context.Background(), scoped.Begin},
		{"Net=off", cancellable, scoped.BeginWithoutSafetyNet},
		{"Net=on", cancellable, scoped.Begin},
	} {
		b.Run(c.name+"/Impl=scoped", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ctx, scope := c.begin(c.ctx)
				if _, err := r.Current(ctx); err != nil {
					b.Fatal(err)
				}
				if err := scope.Remove(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/Impl=hand-written", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				handScope(c.ctx, true)
			}
		})
	}
}
