package rpcscope_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/rpcscope"
)

// A scope the handler ended on another goroutine, whose end is still
// rolling back when Finish runs, keeps its hooks for RunAfter: Finish
// waits for that end instead of leaving it to settle the hooks after
// RunAfter has looked.
func TestFinishWaitsForAnEndInProgressSoItsHooksRun(t *testing.T) {
	rolling, release := make(chan struct{}), make(chan struct{})
	r := scoped.New(func(context.Context) (*tx, error) { return &tx{}, nil },
		scoped.WithRollback(func(context.Context, *tx) error { close(rolling); <-release; return nil }))
	ctx := rpcscope.WithAfter(context.Background())
	sctx, scope := scoped.BeginWithoutSafetyNet(ctx)
	if _, err := r.Current(sctx); err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{}, 1)
	if err := scoped.OnRollback(sctx, func(context.Context) { ran <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { defer close(ended); _ = scope.Remove() }()
	<-rolling
	finished := make(chan error, 1)
	go func() { finished <- rpcscope.Finish(ctx, scope, true, "pkg", errEndedEarly) }()
	select {
	case err := <-finished:
		// Returned while the end still runs: its hooks are not settled yet.
		close(release)
		<-ended
		rpcscope.RunAfter(ctx)
		t.Fatalf("Finish returned %v before the end it found in progress had finished", err)
	case <-time.After(50 * time.Millisecond): // Finish is waiting, as it must; this is no timing assertion on success
	}
	close(release)
	<-ended
	if err := <-finished; err != nil {
		t.Errorf("Finish = %v, want nil: the handler ended the scope itself", err)
	}
	if !rpcscope.Pending(ctx) {
		t.Fatal("the hooks are not pending after Finish")
	}
	rpcscope.RunAfter(ctx)
	select {
	case <-ran:
	default:
		t.Fatal("the OnRollback hook did not run")
	}
}
