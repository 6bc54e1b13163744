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

// The error answer to a failed commit has the client wait for no hook,
// whatever status the handler had set: a 204 the handler chose (no body)
// is not what went out (the error handler's answer, which has one).
func TestErrorAnswerOfANoBodyHandlerDoesNotWaitForHooks(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusNoContent} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			fx := newFixture()
			fx.commitErr = errCommit
			release := make(chan struct{})
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			finished := make(chan struct{}, 1)
			ts := serve(t, fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					session(t, r)
					_ = scoped.OnRollback(r.Context(), func(context.Context) { <-release; finished <- struct{}{} })
					w.WriteHeader(status)
				})))
			t.Cleanup(unblock) // before the server closes, when the test fails
			done := make(chan response, 1)
			go func() { done <- post(t, ts, ts.URL, "") }()
			got := testkit.WaitFor(t, done, "the error answer while the OnRollback hook blocks")
			unblock()
			testkit.WaitFor(t, finished, "the hook to finish")
			if got.err != nil || got.status != http.StatusServiceUnavailable && got.status != http.StatusInternalServerError {
				t.Fatalf("got %d (%v), want the error handler's answer", got.status, got.err)
			}
		})
	}
}
