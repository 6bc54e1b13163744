package scoped_test

// Round 3 review of the core (partial ends, hand commits, inTeardown,
// Goexit guards): reproducers of core bugs, skipped until the lead fixes
// them. Each drives one interleaving deterministically (channels, testkit
// bounds; no timing assertions).

import (
	"context"
	"runtime"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// Two sessions whose rollbacks both end their goroutine (runtime.Goexit,
// as t.FailNow in a fake does). The first Goexit runs Scope.end's guard,
// which ends the rest: the second rollback calls Goexit again, inside the
// guard, which aborts the guard before its finish. The scope is then
// never finished: LiveScopes stays up and a later Remove waits for good.
func TestSecondGoexitInScopeEndGuardStillFinishes(t *testing.T) {
	baseline := scoped.LiveScopes()
	mk := func(name string) *scoped.ScopedSession[*prTx] {
		return scoped.New(func(context.Context) (*prTx, error) { return &prTx{name: name}, nil },
			scoped.WithName(name),
			scoped.WithTeardownErrorHook(nil),
			scoped.WithCommit(func(context.Context, *prTx) error { return nil }),
			scoped.WithRollback(func(context.Context, *prTx) error { runtime.Goexit(); return nil }))
	}
	a, b := mk("a"), mk("b")
	ctx, scope := scoped.Begin(context.Background())
	if _, err := a.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Current(ctx); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		_ = scope.Remove()
	}()
	testkit.WaitFor(t, exited, "the goroutine of the Remove whose teardowns call Goexit")
	if n := scoped.LiveScopes() - baseline; n != 0 {
		t.Errorf("LiveScopes grew by %d after the scope's end, want 0", n)
	}
	removed := make(chan error, 1)
	go func() { removed <- scope.Remove() }()
	testkit.WaitFor(t, removed, "a second Remove after an end whose teardowns called Goexit twice")
}

// The safety net rolled back a session it may end (the scope also holds
// one created WithoutSafetyNet, so the net ends only part of it); the
// code then commits the other session by hand and removes the scope. Part
// of the unit's work was rolled back by the net, so its OnCommit hooks
// must not run (hooks.go: a unit that rolled back more saved only part of
// it). The Remove path takes "nothing committable left + a hand commit"
// for "every session committed by hand" and runs OnCommit.
func TestNetRollbackThenHandCommitRunsNoOnCommit(t *testing.T) {
	var rec testkit.Log
	mk := func(name string, opts ...scoped.Option) *scoped.ScopedSession[*prTx] {
		opts = append(opts,
			scoped.WithName(name),
			scoped.WithTeardownErrorHook(nil),
			scoped.WithCommit(func(_ context.Context, t *prTx) error { rec.Add("commit %s", t.name); return nil }),
			scoped.WithRollback(func(_ context.Context, t *prTx) error { rec.Add("rollback %s", t.name); return nil }))
		return scoped.New(func(context.Context) (*prTx, error) { return &prTx{name: name}, nil }, opts...)
	}
	safe, pinned := mk("safe"), mk("pinned", scoped.WithoutSafetyNet())
	fired := make(chan struct{}, 1)
	scoped.SetNetFiredHook(func(*scoped.Scope) { fired <- struct{}{} })
	defer scoped.SetNetFiredHook(nil)

	parent, cancel := context.WithCancel(context.Background())
	ctx, scope := scoped.Begin(parent)
	defer scope.Remove()
	var ran []string
	_ = scoped.OnCommit(ctx, func(context.Context) { ran = append(ran, "commit") })
	_ = scoped.OnRollback(ctx, func(context.Context) { ran = append(ran, "rollback") })
	if _, err := pinned.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := safe.Current(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	testkit.WaitFor(t, fired, "the safety net's partial end")
	if err := pinned.Commit(ctx); err != nil {
		t.Fatalf("hand commit of the session the net left: %v", err)
	}
	_ = scope.Remove()
	if got := rec.List(); rec.Index("rollback safe") < 0 || rec.Index("commit pinned") < 0 {
		t.Fatalf("teardowns %q, want the net's rollback of safe and the hand commit of pinned", got)
	}
	for _, h := range ran {
		if h == "commit" {
			t.Errorf("hooks %q ran for a unit the net rolled back in part, want no OnCommit", ran)
		}
	}
}
