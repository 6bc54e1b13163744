package scoped_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// A commit that never returns (a proxy that stopped forwarding mid-COMMIT)
// holds the caller no longer than WithTeardownTimeout: the caller learns
// that the outcome is unknown, the scope ends, and the late outcome still
// reaches the hook when the driver finally returns.
func TestTeardownTimeoutBoundsACommitThatIgnoresItsContext(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var hooked []error
	r := scoped.New(func(context.Context) (*fakeConn, error) { return &fakeConn{name: "c"}, nil },
		scoped.WithCommit(func(context.Context, *fakeConn) error { <-release; return nil }), // like database/sql: no context
		scoped.WithTeardownTimeout(20*time.Millisecond),
		scoped.WithTeardownErrorHook(func(_ context.Context, err error) {
			mu.Lock()
			defer mu.Unlock()
			hooked = append(hooked, err)
		}))
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, r, ctx)
	done := make(chan error, 1)
	go func() { done <- scope.Commit() }()
	err := testkit.WaitFor(t, done, "Commit")
	if !errors.Is(err, scoped.ErrTeardownTimeout) || !errors.Is(err, scoped.ErrCommitUnknown) || errors.Is(err, scoped.ErrNotCommitted) {
		t.Fatalf("Commit: %v, want ErrTeardownTimeout and ErrCommitUnknown, not ErrNotCommitted", err)
	}
	if scope.Err() == nil || r.Stats().Live != 0 {
		t.Fatalf("scope not ended: %+v", r.Stats())
	}
	close(release)
	testkit.Eventually(t, "the late outcome reaching the hook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(hooked) == 2
	})
}

// A teardown that honours its context (pgx) sees the bound as its
// deadline; without the option it sees none.
func TestTeardownTimeoutIsTheTeardownContextsDeadline(t *testing.T) {
	for _, bound := range []time.Duration{0, 30 * time.Millisecond} {
		var sawDeadline atomic.Bool
		r := scoped.New(func(context.Context) (*fakeConn, error) { return &fakeConn{name: "c"}, nil },
			scoped.WithRollback(func(ctx context.Context, _ *fakeConn) error {
				_, has := ctx.Deadline()
				sawDeadline.Store(has)
				if !has {
					return nil
				}
				<-ctx.Done() // a ROLLBACK that does not come back
				return ctx.Err()
			}),
			scoped.WithTeardownTimeout(bound), scoped.WithTeardownErrorHook(nil))
		ctx, scope := scoped.Begin(context.Background())
		mustCurrent(t, r, ctx)
		done := make(chan error, 1)
		go func() { done <- scope.Remove() }()
		err := testkit.WaitFor(t, done, "Remove")
		if sawDeadline.Load() != (bound > 0) {
			t.Fatalf("bound %v: teardown context has a deadline: %v", bound, sawDeadline.Load())
		}
		if bound > 0 && !errors.Is(err, scoped.ErrTeardownTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("bound %v: Remove: %v, want the bound's error", bound, err)
		}
		if bound == 0 && err != nil {
			t.Fatalf("no bound: Remove: %v", err)
		}
	}
}
