package scopedsql_test

import (
	"context"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedsql"
)

// The shape of issue 16 item 4: open a scope, fetch its transaction,
// commit, against a hand-written BeginTx/Commit, on a do-nothing driver,
// with a background context and with a cancellable one as net/http gives
// each request. Compare side by side:
//
//	flock /tmp/bench.lock go test -run '^$' -bench 'BeginCommit' -benchmem -count 6 ./scopedsql/
func BenchmarkBeginCommit(b *testing.B) {
	db := openNoop()
	defer db.Close()
	txs := scoped.New(scopedsql.Tx(db, nil))
	for _, c := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"background", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
		{"request", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
	} {
		b.Run(c.name+"/hand", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ctx, cancel := c.ctx()
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
				cancel()
			}
		})
		b.Run(c.name+"/scoped", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ctx, cancel := c.ctx()
				sctx, scope := scoped.Begin(ctx)
				if _, err := txs.Current(sctx); err != nil {
					b.Fatal(err)
				}
				if err := scope.Commit(); err != nil {
					b.Fatal(err)
				}
				cancel()
			}
		})
		b.Run(c.name+"/factory", func(b *testing.B) {
			// scopedsql's begin alone, without the scope: what this
			// package adds to BeginTx.
			begin := scopedsql.Tx(db, nil)
			b.ReportAllocs()
			for b.Loop() {
				ctx, cancel := c.ctx()
				tx, err := begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
				cancel()
			}
		})
	}
}
