package scoped_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// ecTx is a pgx-style transaction for these cases: it counts its ends,
// and its Begin (a savepoint) fails with nestErr when set.
type ecTx struct {
	ends    *atomic.Int32
	nestErr error
	rb      func()
}

func (t *ecTx) Begin(context.Context) (*ecTx, error) {
	if t.nestErr != nil {
		return nil, t.nestErr
	}
	return &ecTx{ends: t.ends}, nil
}
func (t *ecTx) Commit(context.Context) error { t.ends.Add(1); return nil }
func (t *ecTx) Rollback(context.Context) error {
	t.ends.Add(1)
	if t.rb != nil {
		t.rb()
	}
	return nil
}

// ecEvents checks the pairing of the events a hook receives: every
// Created is followed by exactly one end with its ID.
type ecEvents struct {
	mu   sync.Mutex
	all  []scoped.Event
	open map[uint64]bool
	errs []string
}

func (l *ecEvents) hook(_ context.Context, e scoped.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open == nil {
		l.open = map[uint64]bool{}
	}
	l.all = append(l.all, e)
	switch {
	case e.Kind == scoped.Created:
		if e.ID == 0 || l.open[e.ID] {
			l.errs = append(l.errs, "created twice or without ID")
		}
		l.open[e.ID] = true
	case e.ID == 0:
	default:
		if !l.open[e.ID] {
			l.errs = append(l.errs, "end "+e.Kind.String()+" without an open Created")
		}
		delete(l.open, e.ID)
	}
}

func (l *ecEvents) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 || len(l.open) > 0 {
		t.Fatalf("events do not pair: %v, %d still open; all: %+v", l.errs, len(l.open), l.all)
	}
}

func (l *ecEvents) count(k scoped.EventKind, nested bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.all {
		if e.Kind == k && e.Nested == nested {
			n++
		}
	}
	return n
}

// A nested unit whose savepoint cannot be taken (its Begin, or
// WithNesting's function, fails) is a session that failed to be created,
// like a factory's error: the hook should see a Failed event (Nested,
// ID 0), so that scopedotel counts and traces the failed SAVEPOINT, which
// also poisons the enclosing transaction. Today nothing is reported.
func TestEventNestedSavepointThatFailsIsReported(t *testing.T) {
	ev := &ecEvents{}
	ends := new(atomic.Int32)
	txs := scoped.New(func(context.Context) (*ecTx, error) {
		return &ecTx{ends: ends, nestErr: errors.New("savepoint refused")}, nil
	}, scoped.WithEventHook(ev.hook), scoped.WithTeardownErrorHook(nil))
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		if _, err := txs.Current(ctx); err != nil {
			return err
		}
		return scoped.Run(ctx, func(ctx context.Context) error { _, err := txs.Current(ctx); return err })
	})
	if err == nil {
		t.Fatal("Run succeeded with a savepoint refused")
	}
	ev.check(t)
	if n := ev.count(scoped.Failed, true); n != 1 {
		t.Fatalf("%d nested Failed events for the refused savepoint, want 1; events %+v", n, ev.all)
	}
}

// ScopedSession.Commit under a custom ScopeFunc after Close (which rolled
// the key's session back) commits nothing, and must say so, as Commit on
// an ended scope says ErrScopeClosed: nil claims a commit that did not
// happen (a handler finishing during shutdown loses its write silently).
func TestKeyedCommitAfterCloseIsNotNil(t *testing.T) {
	type tenant struct{}
	ends := new(atomic.Int32)
	txs := scoped.New(func(context.Context) (*ecTx, error) { return &ecTx{ends: ends}, nil },
		scoped.WithScopeFunc(scoped.ContextValue(tenant{})))
	ctx := context.WithValue(context.Background(), tenant{}, "t1")
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if err := txs.Close(); err != nil {
		t.Fatal(err)
	}
	if err := txs.Commit(ctx); !errors.Is(err, scoped.ErrClosed) {
		t.Fatalf("Commit after Close: %v, want ErrClosed (the session was rolled back)", err)
	}
	if st := txs.Stats(); st.Committed != 0 || st.RolledBack != 1 || st.Live != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A session asked to commit whose transaction a nested unit poisoned is
// rolled back and fails: its Failed event must still say Commit (the
// doc: "the end was asked to commit (Failed: the commit failed)"), or
// scopedotel records scoped.commit=false and no commit duration for it.
func TestEventPoisonedCommitSaysCommit(t *testing.T) {
	ev := &ecEvents{}
	ends := new(atomic.Int32)
	txs := scoped.New(func(context.Context) (*ecTx, error) { return &ecTx{ends: ends}, nil },
		scoped.WithEventHook(ev.hook), scoped.WithTeardownErrorHook(nil),
		scoped.WithNesting(func(_ context.Context, p *ecTx) (scoped.Nested[*ecTx], error) {
			return scoped.Nested[*ecTx]{Session: p, Release: func(context.Context) error { return nil },
				Rollback: func(context.Context) error { return errors.New("no such savepoint") }}, nil
		}))
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		if _, err := txs.Current(ctx); err != nil {
			return err
		}
		_ = scoped.Run(ctx, func(ctx context.Context) error { _, _ = txs.Current(ctx); return errors.New("child fails") })
		return nil
	})
	if !errors.Is(err, scoped.ErrNotCommitted) {
		t.Fatalf("Run: %v, want ErrNotCommitted", err)
	}
	ev.check(t)
	ev.mu.Lock()
	defer ev.mu.Unlock()
	last := ev.all[len(ev.all)-1]
	if last.Kind != scoped.Failed || last.Nested || !last.Commit {
		t.Fatalf("end of the poisoned session: %+v, want Failed with Commit", last)
	}
}

// A teardown that calls runtime.Goexit (t.FailNow in a test's fake)
// during Scope.Remove must not leave the scope ending for good: a second
// Remove hangs, LiveScopes and the Tracker keep it, the session's end
// event never comes (its scopedotel span stays open) and Stats.Live
// stays 1. The partial end handles this (TestPartialEndThatGoexitsDoesNotHoldTheScope);
// the scope's own end does not.
func TestScopeEndWhoseTeardownGoexitsFinishes(t *testing.T) {
	ev := &ecEvents{}
	ends := new(atomic.Int32)
	txs := scoped.New(func(context.Context) (*ecTx, error) {
		return &ecTx{ends: ends, rb: runtime.Goexit}, nil
	}, scoped.WithEventHook(ev.hook), scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(context.Background())
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = scope.Remove() }()
	testkit.WaitFor(t, done, "the Remove whose teardown calls Goexit")
	second := make(chan error, 1)
	go func() { second <- scope.Remove() }()
	testkit.WaitFor(t, second, "a second Remove")
	ev.check(t)
	if st := txs.Stats(); st.Live != 0 {
		t.Fatalf("stats %+v: the session never counted as ended", st)
	}
}

// Keyed sessions under a ContextValue ScopeFunc, hammered by Current,
// Has, Remove, Commit and Close from many goroutines on a few shared
// keys: every session created is ended exactly once, every Created event
// is paired with one end event, and Stats.Live returns to 0.
func TestKeyedStormPairsEveryEvent(t *testing.T) {
	type tenant struct{}
	ev := &ecEvents{}
	var made, ended atomic.Int32
	txs := scoped.New(func(context.Context) (*ecTx, error) { made.Add(1); return &ecTx{ends: &ended}, nil },
		scoped.WithScopeFunc(scoped.ContextValue(tenant{})), scoped.WithEventHook(ev.hook), scoped.WithTeardownErrorHook(nil))
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				ctx := context.WithValue(context.Background(), tenant{}, i%3)
				switch (g + i) % 5 {
				case 0, 1:
					if _, err := txs.Current(ctx); err != nil && !errors.Is(err, scoped.ErrClosed) {
						t.Error(err)
					}
				case 2:
					_ = txs.Has(ctx)
				case 3:
					_ = txs.Remove(ctx)
				case 4:
					_ = txs.Commit(ctx)
				}
				if g == 0 && i == 200 {
					_ = txs.Close()
				}
			}
		}()
	}
	wg.Wait()
	if err := txs.Close(); err != nil {
		t.Fatal(err)
	}
	ev.check(t)
	if st := txs.Stats(); st.Live != 0 || st.Created != int64(made.Load()) || made.Load() != ended.Load() {
		t.Fatalf("stats %+v, made %d, ended %d", st, made.Load(), ended.Load())
	}
}

// Every path that ends a session outside Scope.end (a hand Commit and
// Remove, the safety net's partial end of a scope that also holds a
// WithoutSafetyNet session, a scope ended while the factory ran, a
// teardown past its bound) pairs its events and leaves Stats.Live at 0.
func TestEventsPairOnEveryEndPath(t *testing.T) {
	ev := &ecEvents{}
	ends := new(atomic.Int32)
	mk := func(opts ...scoped.Option) *scoped.ScopedSession[*ecTx] {
		return scoped.New(func(context.Context) (*ecTx, error) { return &ecTx{ends: ends}, nil },
			append([]scoped.Option{scoped.WithEventHook(ev.hook), scoped.WithTeardownErrorHook(nil)}, opts...)...)
	}
	a, b := mk(scoped.WithName("a")), mk(scoped.WithName("b"), scoped.WithoutSafetyNet())

	ctx, scope := scoped.Begin(context.Background())
	for _, end := range []func(context.Context) error{a.Commit, a.Commit, a.Remove} {
		_, _ = a.Current(ctx)
		if err := end(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = a.Current(ctx)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}

	fired := make(chan struct{}, 1)
	scoped.SetNetFiredHook(func(*scoped.Scope) { fired <- struct{}{} })
	defer scoped.SetNetFiredHook(nil)
	pctx, cancel := context.WithCancel(context.Background())
	nctx, nscope := scoped.Begin(pctx)
	_, _ = a.Current(nctx)
	_, _ = b.Current(nctx)
	cancel()
	testkit.WaitFor(t, fired, "the safety net")
	if err := nscope.Commit(); !errors.Is(err, scoped.ErrNotCommitted) {
		t.Fatalf("Commit after the net: %v", err)
	}

	in, out := make(chan struct{}), make(chan struct{})
	slow := scoped.New(func(context.Context) (*ecTx, error) { close(in); <-out; return &ecTx{ends: ends}, nil },
		scoped.WithEventHook(ev.hook))
	sctx, sscope := scoped.Begin(context.Background())
	res := make(chan error, 1)
	go func() { _, err := slow.Current(sctx); res <- err }()
	testkit.WaitFor(t, in, "the factory")
	_ = sscope.Remove()
	close(out)
	if err := testkit.WaitFor(t, res, "the creation"); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("creation in an ended scope: %v", err)
	}

	release, late := make(chan struct{}), make(chan struct{})
	timed := scoped.New(func(context.Context) (*ecTx, error) {
		return &ecTx{ends: ends, rb: func() { <-release; close(late) }}, nil
	},
		scoped.WithEventHook(ev.hook), scoped.WithTeardownErrorHook(nil), scoped.WithTeardownTimeout(10*time.Millisecond))
	tctx, tscope := scoped.Begin(context.Background())
	_, _ = timed.Current(tctx)
	if err := tscope.Remove(); !errors.Is(err, scoped.ErrTeardownTimeout) {
		t.Fatalf("Remove past the bound: %v", err)
	}
	close(release)
	testkit.WaitFor(t, late, "the late teardown")

	ev.check(t)
	for _, r := range []*scoped.ScopedSession[*ecTx]{a, b, slow, timed} {
		if st := r.Stats(); st.Live != 0 {
			t.Fatalf("%v: stats %+v", r, st)
		}
	}
	if st := timed.Stats(); st.Failed != 1 {
		t.Fatalf("timed: %+v, want one failure", st)
	}
}
