package scopedhttp_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// Under WithRetry, a run whose commit failed on a conflict drops its
// OnCommit hooks and runs its OnRollback hooks before the next run; only
// the run that committed runs its OnCommit hooks, once, after answering.
func TestRetriedRequestRunsOnlyTheCommittedRunsOnCommitHooks(t *testing.T) {
	fx := newFixture()
	failCommits(fx, 2)
	var runs atomic.Int32
	var mu sync.Mutex
	var ran []string
	committed := make(chan struct{}, 4)
	note := func(s string) func(context.Context) {
		return func(context.Context) { mu.Lock(); ran = append(ran, s); mu.Unlock() }
	}
	ts := serve(t, fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
		scopedhttp.WithRetry(5, scopedsql.Retryable))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := runs.Add(1)
		session(t, r)
		_ = scoped.OnCommit(r.Context(), note(fmt.Sprint("commit ", n)))
		_ = scoped.OnCommit(r.Context(), func(context.Context) { committed <- struct{}{} })
		_ = scoped.OnRollback(r.Context(), note(fmt.Sprint("rollback ", n)))
		w.WriteHeader(http.StatusCreated)
	})))
	if got := post(t, ts, ts.URL, ""); got.err != nil || got.status != http.StatusCreated {
		t.Fatalf("got %d (%v), want 201", got.status, got.err)
	}
	testkit.WaitFor(t, committed, "the OnCommit hooks, which run after the answer")
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"rollback 1", "rollback 2", "commit 3"}; !slices.Equal(ran, want) {
		t.Errorf("hooks %q, want %q", ran, want)
	}
}
