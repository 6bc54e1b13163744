//go:build !race

// The race detector changes what allocates; .ci/run runs these without it.

package scoped_test

import (
	"math"
	"runtime"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// TestBeginCommitAllocs holds what a scope with a *sql.Tx costs over a
// hand-written BeginTx/Commit, in allocations (exact, unlike timings). On
// a request's context: the Scope, the session's entry, the safety net's
// registration on the request context (context.AfterFunc: 3), scopedsql's
// bounded begin context (which the net fires: no registration of its own)
// and its channel, and database/sql's registration with it (2). Without a
// cancellable context, only the Scope and the entry.
func TestBeginCommitAllocs(t *testing.T) {
	defer scoped.PauseTracking()() // TestMain's leak check would be counted
	limits := map[string]float64{"background": 2, "request": 9}
	db := testkit.NoopDB()
	defer db.Close()
	for _, c := range beginCommitContexts {
		allocs := map[string]float64{}
		for _, v := range beginCommitVariants(db) {
			allocs[v.name] = allocsPerOp(func() {
				ctx, cancel := c.ctx()
				if err := v.run(ctx); err != nil {
					t.Fatal(err)
				}
				cancel()
			})
		}
		if extra := allocs["scoped"] - allocs["hand"]; extra > limits[c.name] {
			t.Errorf("%s context: scoped allocates %v times, hand-written code %v: +%v, want at most +%v",
				c.name, allocs["scoped"], allocs["hand"], extra, limits[c.name])
		}
		t.Logf("%s context: %v", c.name, allocs)
	}
}

// allocsPerOp is testing.AllocsPerRun without its GOMAXPROCS(1): with one
// P, the goroutine database/sql starts per transaction has often not yet
// exited when the next begins, and the runtime allocates a new one, which
// adds to a variant at random. It returns the least of three measures,
// rounded: what the code itself allocates.
func allocsPerOp(f func()) float64 {
	const n = 2000
	least := math.Inf(1)
	for range 3 {
		f() // warm: pools, lazily made state
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range n {
			f()
		}
		runtime.ReadMemStats(&after)
		least = min(least, float64(after.Mallocs-before.Mallocs)/n)
	}
	return math.Round(least)
}
