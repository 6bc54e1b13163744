package scoped_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	creation "github.com/go-scoped/scoped/shared/bound"
)

// A begin that asks to be watched
// after the scope's safety net has already run must be fired at once,
// whichever way the net ran. When the net ended the whole scope the
// bound sees the scope ended; when the net was not registered yet, the
// bound registers it and it fires at once. But when the scope holds a
// session WithoutSafetyNet beside one the net may end (the partial net),
// the net ends part of the scope, leaves it open and armed, and never runs
// again: a bound asked for afterwards must be done at once (it was not,
// in the first version of the bound, so the begin it bounded waited for a
// connection regardless of the cancelled context).
//
// The window is real in scopedsql: begin checks ctx.Err() and only then
// asks for the bound, in beginOnce (and again around each retry). Here the
// factory plays that adapter and holds the window open.
func TestCreationBoundAskedAfterTheNetRanIsDone(t *testing.T) {
	newFake := func(name string, opts ...scoped.Option) *scoped.ScopedSession[*fakeTx] {
		return scoped.New(func(context.Context) (*fakeTx, error) { return &fakeTx{name: name}, nil },
			append(opts, scoped.WithTeardownErrorHook(nil))...)
	}
	for _, tc := range []struct {
		name   string
		unsafe bool // the scope holds a session WithoutSafetyNet: the partial net
		held   bool // the scope holds a session the net may end
	}{
		{name: "partial net", unsafe: true, held: true},
		{name: "whole scope", held: true},
		{name: "net not registered yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx, scope := scoped.Begin(parent)
			defer scope.Remove()
			safe := newFake("safe")
			if tc.unsafe {
				if _, err := newFake("unsafe", scoped.WithoutSafetyNet()).Current(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if tc.held {
				if _, err := safe.Current(ctx); err != nil {
					t.Fatal(err)
				}
			}

			checked := make(chan struct{})
			proceed := make(chan struct{})
			boundDone := make(chan bool, 1)
			begun := scoped.New(func(fctx context.Context) (*fakeTx, error) {
				if fctx.Err() != nil { // scopedsql's begin checks first
					t.Error("the context was cancelled before the check")
				}
				close(checked)
				<-proceed // preempted here: the context ends and the net runs
				w, ok := fctx.(creation.Watcher)
				if !ok {
					t.Error("the factory context is not a bound.Watcher")
					return &fakeTx{}, nil
				}
				b := newBoundTarget()
				if !w.Watch(b) {
					t.Error("no watch in a scope with a safety net")
					return &fakeTx{}, nil
				}
				// database/sql would now wait for a connection, bounded only by b.
				select {
				case <-b.fired:
					boundDone <- true
				case <-time.After(testkit.Bound): // a hang detector: nothing else fires it until Remove
					boundDone <- false
				}
				return &fakeTx{}, w.Unwatch()
			}, scoped.WithTeardownErrorHook(nil))

			errc := make(chan error, 1)
			go func() { _, err := begun.Current(ctx); errc <- err }()
			testkit.WaitFor(t, checked, "the begin's check of its context")
			cancel()
			if tc.held {
				// The net has run once it rolled back safe's session (it
				// fires the pending bounds before it ends anything).
				testkit.Eventually(t, "the safety net", func() bool { return safe.Stats().RolledBack == 1 })
			}
			close(proceed)
			done := <-boundDone
			if err := <-errc; err == nil {
				t.Error("the begin succeeded in a scope whose context had ended")
			}
			if !done {
				t.Fatal("the creation bound asked for after the safety net ran was never done: " +
					"the begin is not bounded by the cancelled scope context")
			}
		})
	}
}

// A safety net that found nothing to end (every session was ended by
// hand) leaves the scope as if it had never held a session: a begin that
// then asks for the bound on the cancelled context gives up, and the
// scope stays open, as it does for a scope that never held one. (The net
// registered for that begin alone ended the whole scope: the next
// session asked for got ErrScopeClosed instead of being created and
// rolled back by the net; seen by the model test, seed 212, program 407.)
func TestBoundAfterAnIdleNetLeavesTheScopeOpen(t *testing.T) {
	idle := make(chan struct{}, 1)
	scoped.SetNetIdleHook(func(*scoped.Scope) { idle <- struct{}{} })
	defer scoped.SetNetIdleHook(nil)
	safe := scoped.New(func(context.Context) (*fakeTx, error) { return &fakeTx{name: "safe"}, nil },
		scoped.WithTeardownErrorHook(nil))
	begun := scoped.New(func(fctx context.Context) (*fakeTx, error) {
		w := fctx.(creation.Watcher)
		b := newBoundTarget()
		if !w.Watch(b) {
			return nil, errors.New("no watch in a scope with a safety net")
		}
		<-b.fired // the context is cancelled: the net fires at once
		return nil, w.Unwatch()
	}, scoped.WithTeardownErrorHook(nil))
	for range 50 {
		parent, cancel := context.WithCancel(context.Background())
		ctx, scope := scoped.Begin(parent)
		if _, err := safe.Current(ctx); err != nil {
			t.Fatal(err)
		}
		if err := safe.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		testkit.WaitFor(t, idle, "the safety net that finds nothing to end")
		if _, err := begun.Current(ctx); err == nil {
			t.Fatal("a begin bounded by a cancelled scope context succeeded")
		}
		if _, err := safe.Current(ctx); err != nil {
			t.Fatalf("after the bounded begin gave up, the scope is not open: %v", err)
		}
		if err := scope.Remove(); err != nil && !errors.Is(err, scoped.ErrScopeCancelled) {
			t.Fatal(err)
		}
	}
}
