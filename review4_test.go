package scoped_test

import (
	"context"
	"errors"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/shared/unit"
)

// Review of 022d203 (keyed callerLeft), b030f48 (byNet told by the end
// that runs, children) and ffe6217 (unknown hand commit then a failure).

// r4Unit has one ScopedSession per hand commit of kinds ("ok",
// "failed", "unknown"), each committed by hand in ctx, and a rest session
// whose commit saves or fails retryably (errHandConflict).
type r4Unit struct {
	saved int
	hands []*scoped.ScopedSession[*rh2Tx]
	kinds []string
	rest  *scoped.ScopedSession[*rh2Tx]
}

func newR4Unit(kinds []string, restFails bool) *r4Unit {
	u := &r4Unit{kinds: kinds}
	for _, k := range kinds {
		k := k
		u.hands = append(u.hands, scoped.New(func(context.Context) (*rh2Tx, error) {
			switch k {
			case "failed":
				return &rh2Tx{saved: &u.saved, err: errors.New("hand commit refused"), lose: true}, nil
			case "unknown":
				return &rh2Tx{saved: &u.saved, err: errUnknownCommit}, nil
			}
			return &rh2Tx{saved: &u.saved}, nil
		}, scoped.WithTeardownErrorHook(nil)))
	}
	u.rest = scoped.New(func(context.Context) (*rh2Tx, error) {
		if restFails {
			return &rh2Tx{saved: &u.saved, err: errHandConflict, lose: true}, nil
		}
		return &rh2Tx{saved: &u.saved}, nil
	}, scoped.WithTeardownErrorHook(nil))
	return u
}

// commitByHand commits every hand session in ctx, in order.
func (u *r4Unit) commitByHand(t *testing.T, ctx context.Context) {
	t.Helper()
	for i, h := range u.hands {
		if _, err := h.Current(ctx); err != nil {
			t.Fatal(err)
		}
		err := h.Commit(ctx)
		if (err == nil) != (u.kinds[i] == "ok") || u.kinds[i] == "unknown" && !errors.Is(err, scoped.ErrCommitUnknown) {
			t.Fatalf("hand commit %s = %v", u.kinds[i], err)
		}
	}
}

func (u *r4Unit) has(kind string) bool {
	for _, k := range u.kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// The outcome table of hand commits {ok, failed, unknown} followed by the
// unit's commit, saving or failing: the sentinel must say what is known
// (errors.go), the hooks run only for a known outcome, and MayRetry must
// refuse whatever saved or may have saved.
func TestReview4HandCommitThenUnitCommitTable(t *testing.T) {
	for _, c := range []struct {
		kinds []string
	}{
		{kinds: []string{"ok"}},
		{kinds: []string{"failed"}},
		{kinds: []string{"unknown"}},
		{kinds: []string{"ok", "unknown"}},
		{kinds: []string{"ok", "failed"}},
		{kinds: []string{"failed", "unknown"}},
		{kinds: []string{"unknown", "failed"}},
	} {
		for _, restFails := range []bool{false, true} {
			name := strings.Join(c.kinds, "+") + " then commit"
			if restFails {
				name += " failing"
			}
			t.Run(name, func(t *testing.T) {
				u := newR4Unit(c.kinds, restFails)
				ctx, scope := scoped.Begin(context.Background())
				var ran testkit.Log
				_ = scoped.OnCommit(ctx, func(context.Context) { ran.Add("commit") })
				_ = scoped.OnRollback(ctx, func(context.Context) { ran.Add("rollback") })
				u.commitByHand(t, ctx)
				if _, err := u.rest.Current(ctx); err != nil {
					t.Fatal(err)
				}
				err := scope.Commit()
				saved := u.has("ok") || !restFails
				lost := u.has("failed") || restFails
				maybe := u.has("unknown")
				var want, not []error
				hooks := ""
				switch {
				case saved && lost:
					want = []error{scoped.ErrPartiallyCommitted}
				case maybe:
					want, not = []error{scoped.ErrCommitUnknown}, []error{scoped.ErrNotCommitted, scoped.ErrPartiallyCommitted}
				case lost:
					want, not, hooks = []error{scoped.ErrNotCommitted}, []error{scoped.ErrPartiallyCommitted}, "rollback"
				default:
					hooks = "commit"
				}
				if want == nil && err != nil {
					t.Errorf("Commit = %v, want nil", err)
				}
				for _, w := range want {
					if !errors.Is(err, w) {
						t.Errorf("Commit = %v, want %v", err, w)
					}
				}
				for _, n := range not {
					if errors.Is(err, n) {
						t.Errorf("Commit = %v, must not say %v", err, n)
					}
				}
				if (saved || maybe) && scoped.MayRetry(err, func(error) bool { return true }) {
					t.Errorf("MayRetry(%v) = true for a unit that saved or may have saved", err)
				}
				if got := strings.Join(ran.List(), ","); got != hooks {
					t.Errorf("hooks ran %q, want %q", got, hooks)
				}
			})
		}
	}
}

// The same hand commits, then a Remove (nothing else held), or the
// safety net over a rest session still to commit: the hooks, and what
// the owners ask (SavedByHand: not run again; UnknownByHand: "may have
// been saved"). Not defects.
func TestReview4HandCommitThenRemoveOrNetTable(t *testing.T) {
	for _, kinds := range [][]string{{"ok"}, {"failed"}, {"unknown"}, {"ok", "unknown"}, {"ok", "failed"}, {"failed", "unknown"}} {
		for _, end := range []string{"Remove", "net"} {
			t.Run(strings.Join(kinds, "+")+" then "+end, func(t *testing.T) {
				u := newR4Unit(kinds, false)
				parent, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				ctx, scope := scoped.Begin(parent)
				var ran testkit.Log
				_ = scoped.OnCommit(ctx, func(context.Context) { ran.Add("commit") })
				_ = scoped.OnRollback(ctx, func(context.Context) { ran.Add("rollback") })
				u.commitByHand(t, ctx)
				hooks := ""
				if end == "Remove" {
					if err := scope.Remove(); err != nil {
						t.Fatalf("Remove = %v", err)
					}
					switch {
					case u.has("failed") && !u.has("ok") && !u.has("unknown"):
						hooks = "rollback" // nothing was saved
					case !u.has("failed") && !u.has("unknown"):
						hooks = "commit" // everything was saved, by hand
					}
				} else {
					if _, err := u.rest.Current(ctx); err != nil {
						t.Fatal(err)
					}
					cancel(errBoundCause)
					testkit.Eventually(t, "the net's end", func() bool { return scope.Err() != nil })
					_ = scope.Remove()
					if err := scope.Err(); !errors.Is(err, scoped.ErrScopeCancelled) || !errors.Is(err, errBoundCause) {
						t.Errorf("Err = %v, want ErrScopeCancelled and the cause", err)
					}
					if !u.has("ok") && !u.has("unknown") {
						hooks = "rollback"
					}
				}
				if hooks != "" {
					testkit.Eventually(t, "the "+hooks+" hooks", func() bool { return len(ran.List()) > 0 })
				} else {
					time.Sleep(20 * time.Millisecond) // the net runs hooks after its end has finished
				}
				if got := strings.Join(ran.List(), ","); got != hooks {
					t.Errorf("hooks ran %q, want %q", got, hooks)
				}
				if got, want := unit.SavedByHand(scope), u.has("ok") || u.has("unknown"); got != want {
					t.Errorf("SavedByHand = %v, want %v", got, want)
				}
				if got, want := unit.UnknownByHand(scope), u.has("unknown") && !u.has("ok"); got != want {
					t.Errorf("UnknownByHand = %v, want %v", got, want)
				}
			})
		}
	}
}

// A root Run with WithRetry whose fn committed by hand and then failed
// (fn's own error, not the hand commit's) or whose commit then failed
// retryably: run again only if nothing was or may have been saved, and
// say "may have been saved" (ErrCommitUnknown), not "partially saved"
// (ErrPartiallyCommitted), when no hand commit is known to have saved.
func TestReview4RunWithRetryAfterHandCommits(t *testing.T) {
	for _, c := range []struct {
		kinds        []string
		where        string
		wantSentinel error
	}{
		{kinds: []string{"ok"}, where: "fn", wantSentinel: scoped.ErrPartiallyCommitted},
		{kinds: []string{"failed"}, where: "fn"},
		{kinds: []string{"unknown"}, where: "fn", wantSentinel: scoped.ErrCommitUnknown},
		{kinds: []string{"failed", "unknown"}, where: "fn", wantSentinel: scoped.ErrCommitUnknown},
		{kinds: []string{"unknown"}, where: "commit", wantSentinel: scoped.ErrCommitUnknown},
		{kinds: []string{"failed", "unknown"}, where: "commit", wantSentinel: scoped.ErrCommitUnknown},
	} {
		t.Run(strings.Join(c.kinds, "+")+" then "+c.where+" fails", func(t *testing.T) {
			runs := 0
			var u *r4Unit
			err := scoped.Run(context.Background(), func(ctx context.Context) error {
				runs++
				u = newR4Unit(c.kinds, c.where == "commit")
				u.commitByHand(t, ctx)
				if c.where == "fn" {
					return errHandConflict
				}
				_, err := u.rest.Current(ctx)
				return err
			}, scoped.WithRetry(3, func(err error) bool { return errors.Is(err, errHandConflict) }))
			maySave := u.has("ok") || u.has("unknown")
			if wantRuns := map[bool]int{true: 1, false: 3}[maySave]; runs != wantRuns {
				t.Errorf("%d runs, want %d (err %v)", runs, wantRuns, err)
			}
			if c.wantSentinel != nil && !errors.Is(err, c.wantSentinel) {
				t.Errorf("Run = %v, want %v", err, c.wantSentinel)
			}
			if c.wantSentinel == scoped.ErrCommitUnknown && (errors.Is(err, scoped.ErrPartiallyCommitted) || errors.Is(err, scoped.ErrNotCommitted)) {
				t.Errorf("Run = %v: nothing is known saved or lost for sure, want ErrCommitUnknown alone", err)
			}
		})
	}
}

// A child begun in context.WithoutCancel of a request's context (a
// goroutine's scoped.Run that meant to outlive the request, without
// Detach) is a child of the request's scope: the root's net ends it, or
// it is born ended. Its errors say ErrScopeCancelled, "because its
// context ended", but the cause is read from the child's own context,
// never done: nil, and the text reads "%!w(<nil>)".
func TestReview4ChildInAContextWithoutCancelSaysTheRootsCause(t *testing.T) {
	txs := scoped.New(func(context.Context) (*fakeTx, error) { return &fakeTx{name: "tx"}, nil },
		scoped.WithTeardownErrorHook(nil))
	parent, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	ctx, root := scoped.Begin(parent)
	defer root.Remove()
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	_, child := scoped.Begin(context.WithoutCancel(ctx))
	defer child.Remove()
	cancel(errBoundCause)
	testkit.Eventually(t, "the net's end", func() bool { return root.Err() != nil })
	_ = root.Remove()
	lctx, late := scoped.Begin(context.WithoutCancel(ctx))
	defer late.Remove()
	for name, err := range map[string]error{
		"open child Err":     child.Err(),
		"born ended Err":     late.Err(),
		"born ended Current": func() error { _, err := txs.Current(lctx); return err }(),
	} {
		if !errors.Is(err, scoped.ErrScopeCancelled) || !errors.Is(err, errBoundCause) || strings.Contains(err.Error(), "%!") {
			t.Errorf("%s = %v, want ErrScopeCancelled with the root's cause", name, err)
		}
	}
}

// Not defects (b030f48): a grandchild open when the root's net fires says
// the cause; a child that ended itself first keeps a bare ErrScopeClosed;
// an Independent unit (a root of its own) running in a context without
// the root's cancellation is neither ended nor marked by the root's net,
// and commits; after a partial net (a session WithoutSafetyNet kept the
// scope open) the root and its child say nothing of the net once the
// handler's Remove ended them.
func TestReview4NetAndTheScopesAround(t *testing.T) {
	txs := scoped.New(func(context.Context) (*fakeTx, error) { return &fakeTx{name: "tx"}, nil },
		scoped.WithTeardownErrorHook(nil))
	t.Run("grandchild, ended child, Independent", func(t *testing.T) {
		parent, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		ctx, root := scoped.Begin(parent)
		defer root.Remove()
		if _, err := txs.Current(ctx); err != nil {
			t.Fatal(err)
		}
		cctx, child := scoped.Begin(ctx)
		defer child.Remove()
		gctx, grandchild := scoped.Begin(cctx)
		defer grandchild.Remove()
		_, done := scoped.Begin(ctx)
		if err := done.Remove(); err != nil {
			t.Fatal(err)
		}
		own := &fakeTx{name: "own"}
		indep := scoped.New(func(context.Context) (*fakeTx, error) { return own, nil }, scoped.WithTeardownErrorHook(nil))
		started, release := make(chan struct{}), make(chan struct{})
		runErr := make(chan error, 1)
		go func() {
			runErr <- scoped.Run(context.WithoutCancel(gctx), func(ctx context.Context) error {
				if _, err := indep.Current(ctx); err != nil {
					return err
				}
				close(started)
				<-release
				if s, _ := scoped.FromContext(ctx); s.Err() != nil {
					return s.Err()
				}
				_, err := indep.Current(ctx)
				return err
			}, scoped.Independent())
		}()
		testkit.WaitFor(t, started, "the Independent unit")
		cancel(errBoundCause)
		testkit.Eventually(t, "the net's end", func() bool { return root.Err() != nil })
		_ = root.Remove()
		close(release)
		if err := testkit.WaitFor(t, runErr, "the Independent Run"); err != nil || own.commits.Load() != 1 {
			t.Errorf("Independent Run = %v, %d commits: want its own commit, untouched by the enclosing net", err, own.commits.Load())
		}
		if err := grandchild.Err(); !errors.Is(err, scoped.ErrScopeCancelled) || !errors.Is(err, errBoundCause) {
			t.Errorf("grandchild Err = %v, want ErrScopeCancelled and the cause", err)
		}
		if _, err := txs.Current(gctx); !errors.Is(err, errBoundCause) {
			t.Errorf("grandchild Current = %v, want the cause", err)
		}
		if err := done.Err(); !errors.Is(err, scoped.ErrScopeClosed) || errors.Is(err, scoped.ErrScopeCancelled) {
			t.Errorf("child removed before the net: Err = %v, want a bare ErrScopeClosed", err)
		}
	})
	t.Run("partial net", func(t *testing.T) {
		unsafe := scoped.New(func(context.Context) (*fakeTx, error) { return &fakeTx{name: "pgx"}, nil },
			scoped.WithTeardownErrorHook(nil), scoped.WithoutSafetyNet())
		parent, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		ctx, root := scoped.Begin(parent)
		if _, err := txs.Current(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := unsafe.Current(ctx); err != nil {
			t.Fatal(err)
		}
		_, child := scoped.Begin(ctx)
		fired := make(chan struct{})
		scoped.SetNetFiredHook(func(s *scoped.Scope) {
			if s == root {
				close(fired)
			}
		})
		defer scoped.SetNetFiredHook(nil)
		cancel(errBoundCause)
		testkit.WaitFor(t, fired, "the partial net")
		if root.Err() != nil || child.Err() != nil {
			t.Fatalf("after a partial net: root %v, child %v; want both open", root.Err(), child.Err())
		}
		if err := root.Commit(); !errors.Is(err, scoped.ErrNotCommitted) || !errors.Is(err, errBoundCause) {
			t.Errorf("Commit after a partial net = %v, want ErrNotCommitted and the cause", err)
		}
		for name, err := range map[string]error{"root": root.Err(), "child": child.Err()} {
			if !errors.Is(err, scoped.ErrScopeClosed) || errors.Is(err, scoped.ErrScopeCancelled) {
				t.Errorf("%s Err after the handler's end = %v, want a bare ErrScopeClosed", name, err)
			}
		}
	})
}

// The net decides under the scope's lock that every session it holds may
// be ended (none WithoutSafetyNet), unlocks, fires the watched begins and
// only then ends the scope: a WithoutSafetyNet session whose creation was
// in flight at the check and finishes in that window is handed to its
// caller and then rolled back by the net, on the net's goroutine, while
// the caller may be running a query on it (what WithoutSafetyNet is for:
// a pgx.Tx is not safe for that). The same window was there before
// b030f48 (byNet set under the lock changed nothing for publish).
func TestReview4NetDoesNotEndAWithoutSafetyNetSessionBornInItsWindow(t *testing.T) {
	safe := scoped.New(func(context.Context) (*fakeTx, error) { return &fakeTx{name: "safe"}, nil }, scoped.WithTeardownErrorHook(nil))
	var byNet atomic.Bool
	pinned := &fakeTx{name: "pinned", onRollback: func(context.Context) {
		byNet.Store(strings.Contains(string(debug.Stack()), "scoped.(*Scope).cancelled"))
	}}
	proceed, started := make(chan struct{}), make(chan struct{})
	unsafe := scoped.New(func(context.Context) (*fakeTx, error) {
		close(started)
		<-proceed
		return pinned, nil
	}, scoped.WithTeardownErrorHook(nil), scoped.WithoutSafetyNet())
	target := newR3StalledTarget()
	watched := make(chan struct{})
	begun := scoped.New(watchedBegin(target, target.fired, watched), scoped.WithTeardownErrorHook(nil))
	parent, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	ctx, scope := scoped.Begin(parent)
	defer scope.Remove()
	if _, err := safe.Current(ctx); err != nil {
		t.Fatal(err)
	}
	begunErr := make(chan error, 1)
	go func() { _, err := begun.Current(ctx); begunErr <- err }()
	testkit.WaitFor(t, watched, "the watched begin")
	unsafeErr := make(chan error, 1)
	go func() { _, err := unsafe.Current(ctx); unsafeErr <- err }()
	testkit.WaitFor(t, started, "the WithoutSafetyNet factory")
	var partial atomic.Bool
	scoped.SetNetFiredHook(func(s *scoped.Scope) {
		if s == scope {
			partial.Store(true)
		}
	})
	defer scoped.SetNetFiredHook(nil)
	cancel(errBoundCause)
	testkit.WaitFor(t, target.entered, "the net firing the begin") // checked, unlocked, not ended
	close(proceed)
	// Either the caller gets the session (the scope is open) and runs its
	// queries on it, or it is told the net ended the scope and its
	// creation ended the session on the caller's goroutine.
	if err := testkit.WaitFor(t, unsafeErr, "the WithoutSafetyNet session"); err != nil && !errors.Is(err, scoped.ErrScopeCancelled) {
		t.Errorf("Current = %v, want the session or ErrScopeCancelled", err)
	}
	close(target.release)
	testkit.WaitFor(t, begunErr, "the begin")
	testkit.Eventually(t, "the net's end", func() bool { return scope.Err() != nil || partial.Load() })
	_ = scope.Remove()
	if pinned.rollbacks.Load() != 1 {
		t.Fatalf("pinned session rolled back %d times, want once", pinned.rollbacks.Load())
	}
	if byNet.Load() {
		t.Error("the net rolled back a WithoutSafetyNet session on its own goroutine, after handing it to its caller")
	}
}

// Not defects (022d203): a keyed creation whose caller left fails for its
// waiters with callerLeft, whatever the failure was. A waiter whose
// context is alive then runs the factory once itself (single flight kept:
// one more call for all the waiters), gets the factory's own error, not
// the creator's cancellation; an end by key waiting for the creation
// finds nothing and creates nothing; the creator gets its factory's error.
func TestReview4KeyedCreatorLeftWaitersRetryOnce(t *testing.T) {
	type tenant struct{}
	errDown := errors.New("review4: database down")
	for _, c := range []string{"factory keeps failing", "factory recovers", "Remove by key", "Commit by key", "waiters left too"} {
		t.Run(c, func(t *testing.T) {
			var calls atomic.Int32
			release := make(chan struct{})
			txs := scoped.New(func(context.Context) (*fakeTx, error) {
				if calls.Add(1) == 1 {
					<-release
					return nil, errDown // not the caller's leaving: the database
				}
				if c == "factory keeps failing" || c == "waiters left too" {
					return nil, errDown
				}
				return &fakeTx{name: "keyed"}, nil
			}, scoped.WithTeardownErrorHook(nil), scoped.WithScopeFunc(scoped.ContextValue(tenant{})))
			defer txs.Close()
			base := context.WithValue(context.Background(), tenant{}, "t1")
			creator, cancel := context.WithCancelCause(base)
			defer cancel(nil)
			creatorErr := make(chan error, 1)
			go func() { _, err := txs.Current(creator); creatorErr <- err }()
			testkit.Eventually(t, "the factory", func() bool { return calls.Load() == 1 })
			const waiters = 8
			errs := make(chan error, waiters)
			sessions := make(chan *fakeTx, waiters)
			waiterCtx := base
			if c == "waiters left too" {
				waiterCtx = creator
			}
			for range waiters {
				go func() {
					switch c {
					case "Remove by key":
						errs <- txs.Remove(base)
					case "Commit by key":
						errs <- txs.Commit(base)
					default:
						tx, err := txs.Current(waiterCtx)
						sessions <- tx
						errs <- err
					}
				}()
			}
			testkit.Eventually(t, "the waiters parked", func() bool { return testkit.Parked("github.com/go-scoped/scoped.lookup[") })
			time.Sleep(5 * time.Millisecond) // the rest of them too: a waiter late is a first caller, also fine
			cancel(errBoundCause)
			close(release)
			if err := testkit.WaitFor(t, creatorErr, "the creator"); !errors.Is(err, errDown) {
				t.Errorf("creator's Current = %v, want its factory's error", err)
			}
			var first *fakeTx
			for range waiters {
				err := testkit.WaitFor(t, errs, "a waiter")
				switch c {
				case "factory keeps failing":
					if !errors.Is(err, errDown) || errors.Is(err, errBoundCause) {
						t.Errorf("waiter's Current = %v, want the factory's error, not the creator's cause", err)
					}
				case "waiters left too":
					// Its own context's cause, or, having found the creation
					// failed first, the factory's error from a run of its own.
					if !errors.Is(err, errBoundCause) && !errors.Is(err, errDown) {
						t.Errorf("waiter's Current = %v, want its own cause or the factory's error", err)
					}
				case "factory recovers":
					tx := <-sessions
					if err != nil || first != nil && tx != first {
						t.Errorf("waiter's Current = %p, %v; want the one session", tx, err)
					}
					first = tx
				default:
					if err != nil {
						t.Errorf("%s = %v, want nil: nothing was created", c, err)
					}
				}
			}
			want := int32(2)
			if c == "factory keeps failing" || c == "waiters left too" {
				want = 0 // one per waiter at most; checked below
			}
			if c == "Remove by key" || c == "Commit by key" {
				want = 1
			}
			if got := calls.Load(); want != 0 && got != want || want == 0 && got > waiters+1 {
				t.Errorf("factory ran %d times, want %d (single flight)", got, want)
			}
		})
	}
}
