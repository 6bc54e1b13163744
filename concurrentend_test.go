package scoped_test

// Concurrent ends of one scope tree: interleavings the model
// test (model_*_test.go) does not generate. Each test drives one
// interleaving deterministically: a teardown blocks on a channel, and the
// test waits (bounded, testkit) until the concurrent call has either
// returned or is parked, before it lets the teardown go on.

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// ceTx is a session whose ends are recorded, and whose child part (a
// savepoint, WithNesting) can block its rollback.
type ceTx struct{ name string }

// ceReturnedOrParked waits until done has delivered (it returns the value
// and true) or a goroutine running marker is parked (zero, false).
func ceReturnedOrParked(t *testing.T, done <-chan error, marker string) (error, bool) {
	t.Helper()
	var err error
	returned := false
	testkit.Eventually(t, marker+" returned or parked", func() bool {
		select {
		case err = <-done:
			returned = true
			return true
		default:
			return testkit.Parked(marker)
		}
	})
	return err, returned
}

//go:noinline
func ceParentRemove(s *scoped.Scope) error { return s.Remove() }

//go:noinline
func ceScopeRemove(s *scoped.Scope) error { return s.Remove() }

// ceNesting returns a ScopedSession whose child parts' rollback signals
// entered and waits for release, and whose parent rollback records whether
// a child rollback was still running.
func ceNesting(rec *testkit.Log, childBusy *atomic.Bool, entered, release chan struct{}) *scoped.ScopedSession[*ceTx] {
	return scoped.New(func(context.Context) (*ceTx, error) { return &ceTx{name: "tx"}, nil },
		scoped.WithTeardownErrorHook(nil),
		scoped.WithCommit(func(_ context.Context, t *ceTx) error {
			if childBusy.Load() {
				rec.Add("commit %s WHILE ITS CHILD'S ROLLBACK RUNS", t.name)
			} else {
				rec.Add("commit %s", t.name)
			}
			return nil
		}),
		scoped.WithRollback(func(_ context.Context, t *ceTx) error {
			if childBusy.Load() {
				rec.Add("rollback %s WHILE ITS CHILD'S ROLLBACK RUNS", t.name)
			} else {
				rec.Add("rollback %s", t.name)
			}
			return nil
		}),
		scoped.WithNesting(func(_ context.Context, p *ceTx) (scoped.Nested[*ceTx], error) {
			return scoped.Nested[*ceTx]{
				Session: &ceTx{name: p.name + "/sp"},
				Release: func(context.Context) error { rec.Add("release sp"); return nil },
				Rollback: func(context.Context) error {
					childBusy.Store(true)
					rec.Add("rollback sp begins")
					close(entered)
					<-release
					rec.Add("rollback sp ends")
					childBusy.Store(false)
					return nil
				},
			}, nil
		}))
}

// A parent scope removed while its child scope's own Remove (on another
// goroutine) is still ending the child's savepoint must wait for that end,
// as any second ender of a scope does, before it rolls back the
// transaction the savepoint belongs to. It does not: the parent's end
// calls the child's end, which finds (*Scope).end on the stack (the
// parent's) and takes it for a re-entrant teardown of its own scope, so
// the parent's Remove returns ErrReentrant and rolls back the transaction
// while the child's ROLLBACK TO SAVEPOINT still runs on it.
func TestParentRemoveDuringChildRemove(t *testing.T) {
	rec := &testkit.Log{}
	var childBusy atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	r := ceNesting(rec, &childBusy, entered, release)

	ctx, parent := scoped.Begin(context.Background())
	if _, err := r.Current(ctx); err != nil {
		t.Fatal(err)
	}
	cctx, child := scoped.Begin(ctx)
	if _, err := r.Current(cctx); err != nil {
		t.Fatal(err)
	}
	childDone := make(chan error, 1)
	go func() { childDone <- child.Remove() }()
	testkit.WaitFor(t, entered, "the child's savepoint rollback")

	parentDone := make(chan error, 1)
	go func() { parentDone <- ceParentRemove(parent) }()
	perr, early := ceReturnedOrParked(t, parentDone, "ceParentRemove")
	close(release)
	if err := testkit.WaitFor(t, childDone, "the child's Remove"); err != nil {
		t.Errorf("child Remove: %v", err)
	}
	if !early {
		perr = testkit.WaitFor(t, parentDone, "the parent's Remove")
	} else {
		t.Errorf("the parent's Remove returned while its child's teardown still ran (it must wait for it)")
	}
	if perr != nil {
		t.Errorf("parent Remove: %v, want nil (errors.Is ErrReentrant: %v)", perr, errors.Is(perr, scoped.ErrReentrant))
	}
	want := []string{"rollback sp begins", "rollback sp ends", "rollback tx"}
	if got := rec.List(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events %q, want %q", got, want)
	}
}

// The same with the parent committed: the parent's Commit commits the
// transaction before the child's ROLLBACK TO SAVEPOINT has run, so the
// work the child rolled back is saved, and Commit reports
// ErrCommittedCloseFailed wrapping ErrReentrant.
func TestParentCommitDuringChildRemove(t *testing.T) {
	rec := &testkit.Log{}
	var childBusy atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	r := ceNesting(rec, &childBusy, entered, release)

	ctx, parent := scoped.Begin(context.Background())
	if _, err := r.Current(ctx); err != nil {
		t.Fatal(err)
	}
	cctx, child := scoped.Begin(ctx)
	if _, err := r.Current(cctx); err != nil {
		t.Fatal(err)
	}
	childDone := make(chan error, 1)
	go func() { childDone <- child.Remove() }()
	testkit.WaitFor(t, entered, "the child's savepoint rollback")

	parentDone := make(chan error, 1)
	go func() { parentDone <- ceParentCommit(parent) }()
	perr, early := ceReturnedOrParked(t, parentDone, "ceParentCommit")
	close(release)
	if err := testkit.WaitFor(t, childDone, "the child's Remove"); err != nil {
		t.Errorf("child Remove: %v", err)
	}
	if !early {
		perr = testkit.WaitFor(t, parentDone, "the parent's Commit")
	}
	if perr != nil {
		t.Errorf("parent Commit: %v, want nil", perr)
	}
	want := []string{"rollback sp begins", "rollback sp ends", "commit tx"}
	if got := rec.List(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events %q, want %q", got, want)
	}
}

//go:noinline
func ceParentCommit(s *scoped.Scope) error { return s.Commit() }

// The same through the safety net: the parent's context is cancelled
// while the child's owner removes the child (a handler's deferred Remove
// of a nested unit as its client goes away). The net's end of the parent
// must not roll back the transaction under the child's savepoint rollback.
func TestParentNetDuringChildRemove(t *testing.T) {
	rec := &testkit.Log{}
	var childBusy atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	r := ceNesting(rec, &childBusy, entered, release)

	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx, parent := scoped.Begin(base)
	defer parent.Remove()
	if _, err := r.Current(ctx); err != nil {
		t.Fatal(err)
	}
	cctx, child := scoped.Begin(ctx)
	if _, err := r.Current(cctx); err != nil {
		t.Fatal(err)
	}
	childDone := make(chan error, 1)
	go func() { childDone <- child.Remove() }()
	testkit.WaitFor(t, entered, "the child's savepoint rollback")

	cancel() // the parent's safety net (and the child's) fires
	testkit.Eventually(t, "the parent's net ended it or waits", func() bool {
		return parent.Err() != nil && rec.Index("rollback tx WHILE ITS CHILD'S ROLLBACK RUNS") >= 0 ||
			testkit.Parked("(*Scope).cancelled")
	})
	close(release)
	if err := testkit.WaitFor(t, childDone, "the child's Remove"); err != nil {
		t.Errorf("child Remove: %v", err)
	}
	if err := ceParentRemove(parent); err != nil {
		t.Errorf("parent Remove: %v", err)
	}
	want := []string{"rollback sp begins", "rollback sp ends", "rollback tx"}
	if got := rec.List(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events %q, want %q", got, want)
	}
}

// A session committed by hand (ScopedSession.Commit) while its scope is
// removed on another goroutine: the Commit took the session first, so
// Remove has nothing to roll back, and the commit succeeds. The unit's
// work is saved, so its OnRollback hooks must not run (the contract: a
// unit whose sessions were all committed by hand runs its OnCommit hooks
// when it is removed). The scope's end decides the hooks without waiting
// for the hand commit in flight, before it has recorded handCommitted, and
// runs OnRollback.
func TestHandCommitDuringRemoveHooks(t *testing.T) {
	rec := &testkit.Log{}
	entered, release := make(chan struct{}), make(chan struct{})
	r := scoped.New(func(context.Context) (*ceTx, error) { return &ceTx{name: "tx"}, nil },
		scoped.WithTeardownErrorHook(nil),
		scoped.WithCommit(func(_ context.Context, t *ceTx) error {
			close(entered)
			<-release
			rec.Add("commit %s", t.name)
			return nil
		}),
		scoped.WithRollback(func(_ context.Context, t *ceTx) error { rec.Add("rollback %s", t.name); return nil }))

	ctx, s := scoped.Begin(context.Background())
	if _, err := r.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if err := scoped.OnCommit(ctx, func(context.Context) { rec.Add("OnCommit") }); err != nil {
		t.Fatal(err)
	}
	if err := scoped.OnRollback(ctx, func(context.Context) { rec.Add("OnRollback") }); err != nil {
		t.Fatal(err)
	}
	commitDone := make(chan error, 1)
	go func() { commitDone <- r.Commit(ctx) }()
	testkit.WaitFor(t, entered, "the hand commit")

	removeDone := make(chan error, 1)
	go func() { removeDone <- ceScopeRemove(s) }()
	rerr, returned := ceReturnedOrParked(t, removeDone, "ceScopeRemove")
	close(release)
	cerr := testkit.WaitFor(t, commitDone, "the hand commit")
	if !returned {
		rerr = testkit.WaitFor(t, removeDone, "the scope's Remove")
	}
	if cerr != nil || rerr != nil {
		t.Fatalf("Commit: %v, Remove: %v", cerr, rerr)
	}
	got := rec.List()
	if rec.Index("OnRollback") >= 0 || rec.Index("OnCommit") < 0 {
		t.Errorf("events %q: the session was committed (Commit returned nil) and nothing was rolled back, "+
			"yet the unit's hooks ran for a rollback; want OnCommit only", got)
	}
}
