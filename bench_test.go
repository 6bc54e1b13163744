package scoped_test

import (
	"context"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
)

// benchTx is the cheapest possible session: what remains is the cost of
// scoping it.
type benchTx struct{ done bool }

func (t *benchTx) Commit() error   { t.done = true; return nil }
func (t *benchTx) Rollback() error { t.done = true; return nil }

func newBenchTx(context.Context) (*benchTx, error) { return new(benchTx), nil }

type handKey struct{}

// handScope is the hand-written helper users write instead of scoped: the
// transaction, eagerly created, in a context value.
func handScope(ctx context.Context, use bool) {
	tx := new(benchTx)
	ctx = context.WithValue(ctx, handKey{}, tx)
	if use {
		if got, _ := ctx.Value(handKey{}).(*benchTx); got == nil {
			panic("lost")
		}
	}
	_ = tx.Rollback()
}

// mapRegistry is the reference design: one mutex and one map from scope
// token to session, as a straightforward port of scoped_session would be.
type mapRegistry struct {
	mu sync.Mutex
	m  map[*mapToken]*benchTx
}

type mapToken struct{}
type mapKey struct{}

func (r *mapRegistry) begin(ctx context.Context) (context.Context, *mapToken) {
	t := new(mapToken)
	return context.WithValue(ctx, mapKey{}, t), t
}

func (r *mapRegistry) current(ctx context.Context) *benchTx {
	t := ctx.Value(mapKey{}).(*mapToken)
	r.mu.Lock()
	defer r.mu.Unlock()
	tx := r.m[t]
	if tx == nil {
		tx = new(benchTx)
		r.m[t] = tx
	}
	return tx
}

func (r *mapRegistry) remove(t *mapToken) {
	r.mu.Lock()
	tx := r.m[t]
	delete(r.m, t)
	r.mu.Unlock()
	if tx != nil {
		_ = tx.Rollback()
	}
}

// layered adds n context.WithValue layers, as middleware stacks do.
func layered(ctx context.Context, n int) context.Context {
	type layerKey struct{ i int }
	for i := range n {
		ctx = context.WithValue(ctx, layerKey{i}, i)
	}
	return ctx
}

// BenchmarkCurrent measures Current on a scope that already has its
// session, under 6 extra context layers, against a raw ctx.Value lookup
// through the same layers.
func BenchmarkCurrent(b *testing.B) {
	b.Run("Impl=raw-ctx-value", func(b *testing.B) {
		ctx := layered(context.WithValue(context.Background(), handKey{}, new(benchTx)), 6)
		b.ReportAllocs()
		for b.Loop() {
			if ctx.Value(handKey{}).(*benchTx) == nil {
				b.Fatal("lost")
			}
		}
	})
	b.Run("Impl=scoped", func(b *testing.B) {
		r := scoped.New(newBenchTx)
		ctx, scope := scoped.Begin(context.Background())
		defer scope.Remove()
		ctx = layered(ctx, 6)
		if _, err := r.Current(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if tx, err := r.Current(ctx); err != nil || tx == nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Impl=mutex-map", func(b *testing.B) {
		r := &mapRegistry{m: map[*mapToken]*benchTx{}}
		ctx, tok := r.begin(context.Background())
		defer r.remove(tok)
		ctx = layered(ctx, 6)
		r.current(ctx)
		b.ReportAllocs()
		for b.Loop() {
			if r.current(ctx) == nil {
				b.Fatal("lost")
			}
		}
	})
}

// BenchmarkScope measures a whole scope on a cancellable parent: Begin,
// then Current if Used, then Remove; against the hand-written helper and
// the mutex+map registry. Parallel=true runs it under b.RunParallel.
func BenchmarkScope(b *testing.B) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := scoped.New(newBenchTx)
	ref := &mapRegistry{m: map[*mapToken]*benchTx{}}
	impls := []struct {
		name string
		run  func(parent context.Context, use bool)
	}{
		{"hand-written", func(parent context.Context, use bool) { handScope(parent, use) }},
		{"scoped", func(parent context.Context, use bool) {
			ctx, scope := scoped.Begin(parent)
			if use {
				if _, err := r.Current(ctx); err != nil {
					panic(err)
				}
			}
			if err := scope.Remove(); err != nil {
				panic(err)
			}
		}},
		{"mutex-map", func(parent context.Context, use bool) {
			ctx, tok := ref.begin(parent)
			if use {
				ref.current(ctx)
			}
			ref.remove(tok)
		}},
	}
	for _, used := range []bool{false, true} {
		for _, parallel := range []bool{false, true} {
			for _, impl := range impls {
				name := "Used=" + boolName(used) + "/Parallel=" + boolName(parallel) + "/Impl=" + impl.name
				b.Run(name, func(b *testing.B) {
					b.ReportAllocs()
					if !parallel {
						for b.Loop() {
							impl.run(parent, used)
						}
						return
					}
					// Each goroutine gets a cancellable parent of its own, as
					// concurrent requests do: sharing one would measure the
					// lock of that one context.Context, not the scopes.
					b.RunParallel(func(pb *testing.PB) {
						parent, cancel := context.WithCancel(context.Background())
						defer cancel()
						for pb.Next() {
							impl.run(parent, used)
						}
					})
				})
			}
		}
	}
}

func boolName(v bool) string {
	if v {
		return "true"
	}
	return "false"
}

type benchTenant struct{}

// BenchmarkCurrentKeyed measures Current of a session under a custom
// ScopeFunc (scoped.ContextValue) that already exists, under 6 extra
// context layers: the key's lookup, the store's lock and map.
func BenchmarkCurrentKeyed(b *testing.B) {
	r := scoped.New(newBenchTx, scoped.WithScopeFunc(scoped.ContextValue(benchTenant{})))
	defer r.Close()
	ctx := layered(context.WithValue(context.Background(), benchTenant{}, "t1"), 6)
	if _, err := r.Current(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if tx, err := r.Current(ctx); err != nil || tx == nil {
			b.Fatal(err)
		}
	}
}
