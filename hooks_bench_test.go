package scoped_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/go-scoped/scoped"
)

// BenchmarkUnitHooks is the cost of unit hooks: a unit of work (Begin,
// Commit, no session) with no hook, then with n OnCommit hooks (each
// registered and run) and with n OnRollback hooks of a committed unit
// (registered, dropped).
//
//	flock /tmp/bench.lock go test -run '^$' -bench BenchmarkUnitHooks -benchmem .
func BenchmarkUnitHooks(b *testing.B) {
	noop := func(context.Context) {}
	for _, c := range []struct {
		name     string
		n        int
		register func(context.Context, func(context.Context)) error
	}{
		{"none", 0, nil},
		{"OnCommit=1", 1, scoped.OnCommit},
		{"OnCommit=4", 4, scoped.OnCommit},
		{"OnCommit=16", 16, scoped.OnCommit},
		{"OnRollback=1/dropped", 1, scoped.OnRollback},
	} {
		b.Run(fmt.Sprint(c.name), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ctx, scope := scoped.Begin(context.Background())
				for range c.n {
					_ = c.register(ctx, noop)
				}
				if err := scope.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
