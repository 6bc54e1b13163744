package scoped_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// The shape of issue 16 item 4: a unit of work on database/sql that opens
// a scope, fetches its transaction and commits, against a hand-written
// BeginTx/Commit, on a do-nothing driver, with a background context and
// with a cancellable one as net/http gives each request. Compare side by
// side (BENCHMARKS.md):
//
//	flock /tmp/bench.lock go test -run '^$' -bench 'BeginCommit' -benchmem -count 6 .
//
// TestBeginCommitAllocs (allocs_test.go) holds the allocation counts.

// beginCommitContexts are the contexts a unit of work starts from: each
// call returns a fresh one, as each request gets its own.
var beginCommitContexts = []struct {
	name string
	ctx  func() (context.Context, context.CancelFunc)
}{
	{"background", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
	{"request", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
}

// beginCommitVariants are the ways to do the unit of work: by hand, with
// scoped and scopedsql, and with scopedsql's factory alone (what it adds
// to BeginTx).
func beginCommitVariants(db *sql.DB) []struct {
	name string
	run  func(ctx context.Context) error
} {
	txs := scoped.New(scopedsql.Tx(db, nil))
	begin := scopedsql.Tx(db, nil)
	return []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"hand", func(ctx context.Context) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			return tx.Commit()
		}},
		{"scoped", func(ctx context.Context) error {
			sctx, scope := scoped.Begin(ctx)
			if _, err := txs.Current(sctx); err != nil {
				scope.Remove()
				return err
			}
			return scope.Commit()
		}},
		{"factory", func(ctx context.Context) error {
			tx, err := begin(ctx)
			if err != nil {
				return err
			}
			return tx.Commit()
		}},
	}
}

func BenchmarkBeginCommit(b *testing.B) {
	db := testkit.NoopDB()
	defer db.Close()
	for _, c := range beginCommitContexts {
		for _, v := range beginCommitVariants(db) {
			b.Run(c.name+"/"+v.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					ctx, cancel := c.ctx()
					if err := v.run(ctx); err != nil {
						b.Fatal(err)
					}
					cancel()
				}
			})
		}
	}
}
