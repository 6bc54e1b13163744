package scoped_test

// Review of f9eb01a, which split Scope.end into a path for a scope that
// holds only sessions and endUnit for everything else. No behaviour
// difference was found; these tests pin down behaviour of the
// sessions-only path that no other test covered, and pass before and after
// the change. Each one drives its interleaving with channels or checks an
// invariant that holds whichever goroutine wins; none asserts timing.

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	creation "github.com/go-scoped/scoped/shared/bound"
)

// A Commit of a scope holding only sessions, where the first commit (that
// of the oldest session) calls runtime.Goexit, as t.FailNow in a fake
// does. The end's guard must roll back the rest, newest first, and commit
// none of them; it must not end the session whose commit exited again;
// and it must finish the scope, so that later ends return and what they
// return says the scope is closed.
func TestReview7GoexitInCommitOfSessionsOnlyScope(t *testing.T) {
	baseline := scoped.LiveScopes()
	rec := &testkit.Log{}
	mk := func(name string, exit bool) *scoped.ScopedSession[*fakeTx] {
		return scoped.New(func(context.Context) (*fakeTx, error) { return &fakeTx{name: name, rec: rec}, nil },
			scoped.WithName(name),
			scoped.WithTeardownErrorHook(nil),
			scoped.WithCommit(func(ctx context.Context, tx *fakeTx) error {
				err := tx.Commit(ctx)
				if exit {
					runtime.Goexit()
				}
				return err
			}))
	}
	a, b, c := mk("a", true), mk("b", false), mk("c", false)
	ctx, scope := scoped.Begin(context.Background())
	for _, s := range []*scoped.ScopedSession[*fakeTx]{a, b, c} {
		if _, err := s.Current(ctx); err != nil {
			t.Fatal(err)
		}
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		_ = scope.Commit()
	}()
	testkit.WaitFor(t, exited, "the goroutine of the Commit whose first commit calls Goexit")
	if got, want := rec.List(), []string{"commit a", "rollback c", "rollback b"}; !slices.Equal(got, want) {
		t.Errorf("teardowns = %q, want %q", got, want)
	}
	if n := scoped.LiveScopes() - baseline; n != 0 {
		t.Errorf("LiveScopes grew by %d after the scope's end, want 0", n)
	}
	if err := scope.Err(); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Errorf("Err = %v, want ErrScopeClosed", err)
	}
	again := make(chan [2]error, 1)
	go func() { again <- [2]error{scope.Remove(), scope.Commit()} }()
	errs := testkit.WaitFor(t, again, "Remove and Commit after an end whose commit called Goexit")
	if errs[0] != nil {
		t.Errorf("later Remove = %v, want nil", errs[0])
	}
	if !errors.Is(errs[1], scoped.ErrScopeClosed) {
		t.Errorf("later Commit = %v, want ErrScopeClosed", errs[1])
	}
	if got := len(rec.List()); got != 3 {
		t.Errorf("%d teardowns after the later ends, want still 3: %q", got, rec.List())
	}
}

// A scope that held only a begin watched by its safety net, which failed:
// the net stays registered, and the scope holds no session, no creation
// and no unit state (the sessions-only end, with a registration to stop).
// Its Commit ends the scope as one that held something: nil, then closed
// for every later end, no longer counted, and the context's end afterwards
// changes nothing it says.
func TestReview7ScopeThatOnlyWatchedAFailedBeginEnds(t *testing.T) {
	baseline := scoped.LiveScopes()
	parent, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	gaveUp := errors.New("no connection")
	txs := scoped.New(func(fctx context.Context) (*fakeTx, error) {
		w := fctx.(creation.Watcher)
		if !w.Watch(newBoundTarget()) {
			return nil, errors.New("no watch in a scope with a safety net")
		}
		if err := w.Unwatch(); err != nil {
			return nil, err
		}
		return nil, gaveUp
	}, scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(parent)
	if _, err := txs.Current(ctx); !errors.Is(err, gaveUp) {
		t.Fatalf("Current = %v, want the factory's error", err)
	}
	if err := scope.Commit(); err != nil {
		t.Fatalf("Commit = %v, want nil", err)
	}
	if n := scoped.LiveScopes() - baseline; n != 0 {
		t.Errorf("LiveScopes grew by %d after the scope's end, want 0", n)
	}
	cancel(errBoundCause) // the net is gone: nothing is ended or reattributed
	if err := scope.Err(); !errors.Is(err, scoped.ErrScopeClosed) || errors.Is(err, scoped.ErrScopeCancelled) {
		t.Errorf("Err = %v, want ErrScopeClosed without ErrScopeCancelled", err)
	}
	if err := scope.Commit(); !errors.Is(err, scoped.ErrScopeClosed) || errors.Is(err, scoped.ErrScopeCancelled) {
		t.Errorf("later Commit = %v, want ErrScopeClosed without ErrScopeCancelled", err)
	}
	if err := scope.Remove(); err != nil {
		t.Errorf("later Remove = %v, want nil", err)
	}
}

// A Remove or Commit of the scope called from the teardown of one of its
// sessions, while the end of a scope holding only sessions runs, is told
// it is re-entrant instead of waiting for itself; the end goes on and
// ends every session once.
func TestReview7ScopeEndFromTeardownOfSessionsOnlyScope(t *testing.T) {
	rec := &testkit.Log{}
	var inner [2]error
	var scope *scoped.Scope
	var calls atomic.Int64
	a := txSession(rec, "a", &calls, scoped.WithRollback(func(ctx context.Context, tx *fakeTx) error {
		inner[0], inner[1] = scope.Remove(), scope.Commit()
		return tx.Rollback(ctx)
	}))
	b := txSession(rec, "b", &calls)
	var ctx context.Context
	ctx, scope = scoped.Begin(context.Background())
	for _, s := range []*scoped.ScopedSession[*fakeTx]{a, b} {
		if _, err := s.Current(ctx); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- scope.Remove() }()
	if err := testkit.WaitFor(t, done, "the Remove whose teardown ends its own scope"); err != nil {
		t.Errorf("Remove = %v, want nil", err)
	}
	for i, err := range inner {
		if !errors.Is(err, scoped.ErrReentrant) {
			t.Errorf("end %d from the teardown = %v, want ErrReentrant", i, err)
		}
	}
	if got, want := rec.List(), []string{"rollback b", "rollback a"}; !slices.Equal(got, want) {
		t.Errorf("teardowns = %q, want %q", got, want)
	}
}

// A hand end of a session (ScopedSession.Commit or Remove) racing the end
// of its scope, which holds nothing else: whichever takes the session, it
// is ended exactly once, and the scope's end returns only once it has
// ended (a hand end that took it first is waited for, not overtaken).
func TestReview7HandEndRacingSessionsOnlyScopeEnd(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		handCommit, endCommit bool
	}{
		{"hand commit, scope remove", true, false},
		{"hand remove, scope commit", false, true},
		{"hand commit, scope commit", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handWon := 0
			defer func() { t.Logf("the hand end took the session in %d of 200 runs", handWon) }()
			for i := 0; i < 200; i++ {
				var txA, txB *fakeTx
				// a's teardown is done only once the scope's end has begun,
				// and yields then, so that a scope's end that did not wait
				// for a hand end in progress would return before it is done.
				var doneA atomic.Bool
				var scope *scoped.Scope
				slow := func(end func(*fakeTx, context.Context) error) func(context.Context, *fakeTx) error {
					return func(ctx context.Context, tx *fakeTx) error {
						err := end(tx, ctx)
						for scope.Err() == nil {
							runtime.Gosched()
						}
						for range 20 {
							runtime.Gosched()
						}
						doneA.Store(true)
						return err
					}
				}
				a := scoped.New(func(context.Context) (*fakeTx, error) { txA = &fakeTx{name: "a"}; return txA, nil },
					scoped.WithName("a"), scoped.WithTeardownErrorHook(nil),
					scoped.WithCommit(slow((*fakeTx).Commit)), scoped.WithRollback(slow((*fakeTx).Rollback)))
				b := scoped.New(func(context.Context) (*fakeTx, error) { txB = &fakeTx{name: "b"}; return txB, nil },
					scoped.WithName("b"), scoped.WithTeardownErrorHook(nil))
				var ctx context.Context
				ctx, scope = scoped.Begin(context.Background())
				if _, err := a.Current(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Current(ctx); err != nil {
					t.Fatal(err)
				}
				start := make(chan struct{})
				hand := make(chan error, 1)
				go func() {
					<-start
					if tc.handCommit {
						hand <- a.Commit(ctx)
					} else {
						hand <- a.Remove(ctx)
					}
				}()
				close(start)
				var endErr error
				if tc.endCommit {
					endErr = scope.Commit()
				} else {
					endErr = scope.Remove()
				}
				// Read before the hand end is known to have returned.
				ca, ra := txA.commits.Load(), txA.rollbacks.Load()
				if ca+ra != 1 || !doneA.Load() {
					t.Fatalf("run %d: when the scope's end returned, a was committed %d and rolled back %d times (teardown done: %v), want ended once", i, ca, ra, doneA.Load())
				}
				handErr := testkit.WaitFor(t, hand, "the hand end")
				if got := txA.commits.Load() + txA.rollbacks.Load(); got != 1 {
					t.Fatalf("run %d: a ended %d times, want 1", i, got)
				}
				switch {
				case tc.handCommit && handErr == nil && ca != 1:
					t.Fatalf("run %d: hand Commit = nil, but a was committed %d times", i, ca)
				case tc.handCommit && handErr != nil && !errors.Is(handErr, scoped.ErrScopeClosed):
					t.Fatalf("run %d: hand Commit = %v, want nil or ErrScopeClosed", i, handErr)
				case tc.handCommit && handErr != nil && !tc.endCommit && ca != 0:
					t.Fatalf("run %d: hand Commit = %v and the scope was removed, but a was committed", i, handErr)
				case tc.handCommit && tc.endCommit && ca != 1:
					t.Fatalf("run %d: a committed %d times, want once, by hand or by the scope", i, ca)
				}
				if tc.handCommit && handErr == nil || !tc.handCommit && ra == 1 {
					handWon++
				}
				if !tc.handCommit && handErr != nil {
					t.Fatalf("run %d: hand Remove = %v, want nil", i, handErr)
				}
				if endErr != nil {
					t.Fatalf("run %d: scope's end = %v, want nil", i, endErr)
				}
				wantB := [2]int32{0, 1}
				if tc.endCommit {
					wantB = [2]int32{1, 0}
				}
				if got := [2]int32{txB.commits.Load(), txB.rollbacks.Load()}; got != wantB {
					t.Fatalf("run %d: b commits/rollbacks = %v, want %v", i, got, wantB)
				}
			}
		})
	}
}
