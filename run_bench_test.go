package scoped_test

import (
	"context"
	"testing"

	"github.com/go-scoped/scoped"
)

// BenchmarkRun compares Run with one session against the same unit of work
// written by hand with Begin, Current and Commit, and a nested Run (a
// savepoint) against a savepoint written by hand on the transaction. The
// session is a do-nothing pgx-style transaction whose Begin is a savepoint.
func BenchmarkRun(b *testing.B) {
	txs := scoped.New(func(context.Context) (*benchNestTx, error) { return new(benchNestTx), nil })
	ctx, cancel := context.WithCancel(context.Background()) // cancellable, as a request's
	defer cancel()
	b.Run("Unit=Run", func(b *testing.B) {
		b.ReportAllocs()
		fn := func(ctx context.Context) error { _, err := txs.Current(ctx); return err }
		for b.Loop() {
			if err := scoped.Run(ctx, fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Unit=ByHand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sctx, scope := scoped.Begin(ctx)
			if _, err := txs.Current(sctx); err != nil {
				b.Fatal(err)
			}
			if err := scope.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Nested=Run", func(b *testing.B) {
		b.ReportAllocs()
		outer, scope := scoped.Begin(ctx)
		defer scope.Remove()
		if _, err := txs.Current(outer); err != nil {
			b.Fatal(err)
		}
		fn := func(ctx context.Context) error { _, err := txs.Current(ctx); return err }
		for b.Loop() {
			if err := scoped.Run(outer, fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Nested=ByHand", func(b *testing.B) {
		b.ReportAllocs()
		tx := new(benchNestTx)
		for b.Loop() {
			sp, err := tx.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := sp.Commit(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchNestTx is the cheapest pgx-style transaction that nests.
type benchNestTx struct{ done bool }

func (t *benchNestTx) Begin(context.Context) (*benchNestTx, error) { return new(benchNestTx), nil }
func (t *benchNestTx) Commit(context.Context) error                { t.done = true; return nil }
func (t *benchNestTx) Rollback(context.Context) error              { t.done = true; return nil }
