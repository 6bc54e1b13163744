package scopedsql_test

import (
	"context"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// BenchmarkNewTxBeginCommit is what a unit of work on NewTx without
// replicas costs, on a do-nothing driver: NewTx installs a commit and a
// close of its own (for replicas and read-your-writes), which users
// without them pay too. Compare with the commit before 02bf653:
//
//	flock /tmp/bench.lock go test -run '^$' -bench NewTxBeginCommit -benchmem -count 6 ./scopedsql/
func BenchmarkNewTxBeginCommit(b *testing.B) {
	db := testkit.NoopDB()
	defer db.Close()
	txs := scopedsql.NewTx(db, nil)
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		sctx, scope := scoped.Begin(ctx)
		if _, err := txs.Current(sctx); err != nil {
			b.Fatal(err)
		}
		if err := scope.Commit(); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
}
