package scoped_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// manualCtx is a cancellable context that counts the callbacks registered
// on it with context.AfterFunc (and their removal), so a test can see
// whether a scope set up its safety net without waiting for anything.
type manualCtx struct {
	context.Context // values only
	done            chan struct{}

	mu         sync.Mutex
	funcs      map[int]func()
	next       int
	registered int
	stopped    int
}

func newManualCtx(parent context.Context) *manualCtx {
	return &manualCtx{Context: parent, done: make(chan struct{}), funcs: map[int]func(){}}
}

func (c *manualCtx) Done() <-chan struct{} { return c.done }

func (c *manualCtx) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

// AfterFunc makes manualCtx an afterFuncer: context.AfterFunc registers
// through it.
func (c *manualCtx) AfterFunc(f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.next
	c.next++
	c.registered++
	c.funcs[id] = f
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.funcs[id]; !ok {
			return false
		}
		delete(c.funcs, id)
		c.stopped++
		return true
	}
}

func (c *manualCtx) cancel() {
	c.mu.Lock()
	close(c.done)
	funcs := c.funcs
	c.funcs = map[int]func(){}
	c.mu.Unlock()
	for _, f := range funcs {
		f()
	}
}

func (c *manualCtx) counts() (registered, stopped int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.registered, c.stopped
}

func TestSafetyNetRemovesCancelledScope(t *testing.T) {
	errRollback := errors.New("rollback on a broken connection")
	baseline := scoped.LiveScopes()
	rolledBack := make(chan struct{})
	hookErr := make(chan error, 1)
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{rollbackErr: errRollback, onRollback: func(context.Context) { close(rolledBack) }}, nil
	}, scoped.WithTeardownErrorHook(func(_ context.Context, err error) { hookErr <- err }))
	parent, cancel := context.WithCancel(context.Background())
	ctx, scope := scoped.Begin(parent)
	tx := mustCurrent(t, r, ctx)

	cancel() // and no Remove
	testkit.WaitFor(t, rolledBack, "rollback by the safety net")
	if err := testkit.WaitFor(t, hookErr, "hook call by the safety net"); !errors.Is(err, errRollback) {
		t.Fatalf("hook got %v, want the safety net's teardown error", err)
	}
	testkit.Eventually(t, "LiveScopes back to its value before Begin", func() bool {
		return scoped.LiveScopes() == baseline
	})
	if _, err := r.Current(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current after the safety net = %v, want ErrScopeClosed", err)
	}
	if err := scope.Remove(); err != nil {
		t.Fatalf("Remove after the safety net = %v, want nil", err)
	}
	if n := tx.rollbacks.Load(); n != 1 {
		t.Fatalf("rolled back %d times, want 1", n)
	}
	if st := r.Stats(); st.Live != 0 || st.Failed != 1 {
		t.Fatalf("Stats = %+v, want Live 0, Failed 1", st)
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d, want %d", n, baseline)
	}
}

func TestSafetyNetRegistersOnlyForScopesHoldingASession(t *testing.T) {
	var calls atomic.Int64
	a := txSession(nil, "A", &calls)
	b := txSession(nil, "B", &calls)

	// A scope that never asks for a session registers nothing, and its
	// context being cancelled leaves it alone (there is nothing to end).
	m := newManualCtx(context.Background())
	_, unused := scoped.Begin(m)
	m.cancel()
	if reg, _ := m.counts(); reg != 0 {
		t.Fatalf("a scope without sessions registered %d callbacks on its context", reg)
	}
	if err := unused.Err(); err != nil {
		t.Fatalf("a scope without sessions was ended by cancellation: %v", err)
	}
	if err := unused.Remove(); err != nil {
		t.Fatal(err)
	}

	// A scope with sessions registers once, and Remove unregisters it.
	m = newManualCtx(context.Background())
	ctx, scope := scoped.Begin(m)
	if reg, _ := m.counts(); reg != 0 {
		t.Fatalf("Begin registered %d callbacks before any session", reg)
	}
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)
	mustCurrent(t, a, ctx)
	if reg, _ := m.counts(); reg != 1 {
		t.Fatalf("registered %d callbacks for one scope, want 1", reg)
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if reg, stopped := m.counts(); reg != 1 || stopped != 1 {
		t.Fatalf("after Remove: registered %d, stopped %d; want 1, 1", reg, stopped)
	}
}

func TestSafetyNetFiresOnceAndRemoveWaitsForIt(t *testing.T) {
	baseline := scoped.LiveScopes()
	var calls atomic.Int64
	rec := &testkit.Log{}
	r := txSession(rec, "A", &calls)
	m := newManualCtx(context.Background())
	ctx, scope := scoped.Begin(m)
	tx := mustCurrent(t, r, ctx)
	m.cancel() // runs the safety net on its own goroutine
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	// Whether Remove or the safety net got there first, the scope is fully
	// ended when Remove returns, and ended once.
	if n := tx.rollbacks.Load(); n != 1 {
		t.Fatalf("rolled back %d times, want 1", n)
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d, want %d", n, baseline)
	}
	if st := r.Stats(); st.Live != 0 || st.RolledBack != 1 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestCommitAfterScopeEndedReportsNothingCommitted(t *testing.T) {
	var calls atomic.Int64
	r := txSession(nil, "A", &calls)

	// Removed first: a later Commit committed nothing and must not say it did.
	ctx, scope := scoped.Begin(context.Background())
	tx := mustCurrent(t, r, ctx)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := scope.Commit(); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Errorf("Commit after Remove = %v, want ErrScopeClosed (the session was rolled back)", err)
	}
	if tx.commits.Load() != 0 {
		t.Fatal("Commit after Remove committed")
	}

	// Ended by the safety net (say, a job's deadline passed just before
	// its final Commit): the caller must learn its work was rolled back.
	m := newManualCtx(context.Background())
	ctx, scope = scoped.Begin(m)
	tx = mustCurrent(t, r, ctx)
	m.cancel()
	testkit.Eventually(t, "safety net", func() bool { return tx.rollbacks.Load() == 1 })
	if err := scope.Commit(); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Errorf("Commit after the safety net rolled back = %v, want ErrScopeClosed", err)
	}
	if tx.commits.Load() != 0 {
		t.Fatal("Commit after the safety net committed")
	}
	_ = scope.Remove()
}

func TestBeginWithoutSafetyNetRegistersNothing(t *testing.T) {
	baseline := scoped.LiveScopes()
	var calls atomic.Int64
	r := txSession(nil, "A", &calls)
	m := newManualCtx(context.Background())
	ctx, scope := scoped.BeginWithoutSafetyNet(m)
	tx := mustCurrent(t, r, ctx)
	m.cancel()
	if reg, _ := m.counts(); reg != 0 {
		t.Fatalf("BeginWithoutSafetyNet registered %d callbacks", reg)
	}
	if scope.Err() != nil || tx.rollbacks.Load() != 0 {
		t.Fatal("a scope without safety net was ended by its context's cancellation")
	}
	if got := mustCurrent(t, r, ctx); got != tx {
		t.Fatal("session lost")
	}
	if n := scoped.LiveScopes() - baseline; n != 1 {
		t.Fatalf("LiveScopes grew by %d, want 1", n)
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if tx.rollbacks.Load() != 1 {
		t.Fatal("Remove did not roll back")
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d, want %d", n, baseline)
	}
}

// A safety net that finds nothing to end changes no outcome: after the
// handler committed its session by hand (ScopedSession.Commit, the README's
// pattern), the request's context ending leaves the scope open and its
// Err nil, so that the request is not answered "not saved" for saved work.
func TestNetWithNothingToEndChangesNoOutcome(t *testing.T) {
	mctx := newManualCtx(context.Background())
	var calls atomic.Int64
	txs := txSession(nil, "tx", &calls)
	ctx, scope := scoped.Begin(mctx)
	defer scope.Remove()
	tx := mustCurrent(t, txs, ctx)
	if err := txs.Commit(ctx); err != nil || tx.commits.Load() != 1 {
		t.Fatalf("hand commit: %v, %d commits", err, tx.commits.Load())
	}
	idle := make(chan struct{})
	scoped.SetNetIdleHook(func(s *scoped.Scope) {
		if s == scope {
			close(idle)
		}
	})
	defer scoped.SetNetIdleHook(nil)
	mctx.cancel()
	testkit.Eventually(t, "the safety net to run", func() bool {
		select {
		case <-idle:
			return true
		default:
			return scope.Err() != nil // a net that ended the emptied scope
		}
	})
	if err := scope.Err(); err != nil {
		t.Fatalf("Err after the net found nothing to end: %v, want nil", err)
	}
	if err := scope.Commit(); err != nil {
		t.Fatalf("Commit of the emptied scope: %v, want nil", err)
	}
}
