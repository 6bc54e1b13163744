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
)

type valueKey struct{}

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

func TestFactoryContextHasScopeValuesAndBeginCancellation(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), valueKey{}, "req-1"))
	defer cancel()
	var fctx context.Context
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		fctx = ctx
		return &fakeTx{}, nil
	}, scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(parent)
	defer scope.Remove()

	// The caller passes a narrower context: its own cancel and deadline.
	narrow, narrowCancel := context.WithDeadline(ctx, time.Now().Add(time.Hour))
	mustCurrent(t, r, narrow)
	if v := fctx.Value(valueKey{}); v != "req-1" {
		t.Fatalf("factory context value = %v, want the value set before Begin", v)
	}
	if s, ok := scoped.FromContext(fctx); !ok || s != scope {
		t.Fatal("factory context does not carry the scope")
	}
	if _, ok := fctx.Deadline(); ok {
		t.Fatal("factory context has the deadline of the context given to Current")
	}
	narrowCancel()
	if err := fctx.Err(); err != nil {
		t.Fatalf("cancelling the context given to Current cancelled the factory context: %v", err)
	}
	cancel()
	waitFor(t, fctx.Done(), "factory context done after the Begin context was cancelled")
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
}

func TestFactoryMayUseOtherSessionsOfItsScope(t *testing.T) {
	var calls atomic.Int64
	a := txSession(nil, "A", &calls)
	var inner *fakeTx
	b := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		// No lock of the scope is held while a factory runs.
		tx, err := a.Current(ctx)
		inner = tx
		return &fakeTx{name: "B"}, err
	}, scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	mustCurrent(t, b, ctx)
	if got := mustCurrent(t, a, ctx); got != inner {
		t.Fatal("a factory's Current found a different session than its scope's")
	}
}

func TestTeardownContextIsNotCancelled(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), valueKey{}, "req-2"))
	var mu sync.Mutex
	var errs []error
	var values []any
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{onRollback: func(ctx context.Context) {
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, ctx.Err())
			values = append(values, ctx.Value(valueKey{}))
		}}, nil
	}, scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(parent)
	tx := mustCurrent(t, r, ctx)
	cancel() // the client went away
	// Whoever ends the scope (Remove or the safety net), Remove returns
	// once it has ended.
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if tx.rollbacks.Load() != 1 || len(errs) != 1 {
		t.Fatalf("rolled back %d times, want 1", tx.rollbacks.Load())
	}
	if errs[0] != nil {
		t.Fatalf("Rollback got a context that was already done: %v", errs[0])
	}
	if values[0] != "req-2" {
		t.Fatalf("Rollback context value = %v, want the scope's", values[0])
	}
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
	waitFor(t, rolledBack, "rollback by the safety net")
	if err := waitFor(t, hookErr, "hook call by the safety net"); !errors.Is(err, errRollback) {
		t.Fatalf("hook got %v, want the safety net's teardown error", err)
	}
	eventually(t, "LiveScopes back to its value before Begin", func() bool {
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
	rec := &recorder{}
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
	eventually(t, "safety net", func() bool { return tx.rollbacks.Load() == 1 })
	if err := scope.Commit(); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Errorf("Commit after the safety net rolled back = %v, want ErrScopeClosed", err)
	}
	if tx.commits.Load() != 0 {
		t.Fatal("Commit after the safety net committed")
	}
	_ = scope.Remove()
}

func TestChildScopeHasItsOwnSession(t *testing.T) {
	var calls atomic.Int64
	rec := &recorder{}
	r := txSession(rec, "A", &calls)
	ctx, parent := scoped.Begin(context.Background())
	defer parent.Remove()
	childCtx, child := scoped.Begin(ctx)
	if s, _ := scoped.FromContext(childCtx); s != child || s == parent {
		t.Fatal("FromContext of a child context is not the child scope")
	}

	p := mustCurrent(t, r, ctx)
	c := mustCurrent(t, r, childCtx)
	if p == c {
		t.Fatal("a child scope got its parent's session")
	}
	if err := child.Remove(); err != nil {
		t.Fatal(err)
	}
	if c.rollbacks.Load() != 1 || p.rollbacks.Load() != 0 {
		t.Fatal("child Remove must end the child's session only")
	}
	if err := parent.Err(); err != nil {
		t.Fatalf("child Remove ended the parent: %v", err)
	}
	if got := mustCurrent(t, r, ctx); got != p {
		t.Fatal("parent lost its session when its child ended")
	}
	if _, err := r.Current(childCtx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current in the removed child = %v, want ErrScopeClosed", err)
	}
}

func TestParentRemoveEndsOpenChildrenFirst(t *testing.T) {
	baseline := scoped.LiveScopes()
	var calls atomic.Int64
	rec := &recorder{}
	parentTx := txSession(rec, "parent", &calls)
	childTx := txSession(rec, "child", &calls)
	ctx, parent := scoped.Begin(context.Background())
	c1, child1 := scoped.Begin(ctx)
	c2, child2 := scoped.Begin(ctx)
	grandCtx, grandchild := scoped.Begin(c2)
	// The children's sessions are older than the parent's: children
	// still end first.
	mustCurrent(t, childTx, c1)
	mustCurrent(t, childTx, grandCtx)
	mustCurrent(t, parentTx, ctx)
	if n := scoped.LiveScopes() - baseline; n != 4 {
		t.Fatalf("LiveScopes grew by %d, want 4", n)
	}

	if err := parent.Remove(); err != nil {
		t.Fatal(err)
	}
	ev := rec.list()
	if len(ev) != 3 || ev[2] != "rollback parent" {
		t.Fatalf("events %v: children's sessions must end before the parent's", ev)
	}
	for _, s := range []*scoped.Scope{child1, child2, grandchild} {
		if !errors.Is(s.Err(), scoped.ErrScopeClosed) {
			t.Fatal("a child scope is still open after its parent was removed")
		}
	}
	if _, err := childTx.Current(c1); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current in a child of a removed parent = %v, want ErrScopeClosed", err)
	}
	if err := child1.Remove(); err != nil {
		t.Fatalf("Remove of a child already ended by its parent = %v", err)
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d, want %d", n, baseline)
	}
	if len(rec.list()) != 3 {
		t.Fatalf("a session ended twice: %v", rec.list())
	}
}

func TestBeginUnderEndedParentIsBornEnded(t *testing.T) {
	baseline := scoped.LiveScopes()
	var calls atomic.Int64
	r := txSession(nil, "A", &calls)
	ctx, parent := scoped.Begin(context.Background())
	if err := parent.Remove(); err != nil {
		t.Fatal(err)
	}
	childCtx, child := scoped.Begin(ctx)
	if !errors.Is(child.Err(), scoped.ErrScopeClosed) {
		t.Fatalf("child of an ended scope: Err = %v, want ErrScopeClosed", child.Err())
	}
	if _, err := r.Current(childCtx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current in a child of an ended scope = %v, want ErrScopeClosed", err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatal("factory ran in a scope born ended")
	}
	if err := child.Remove(); err != nil {
		t.Fatal(err)
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d, want %d", n, baseline)
	}
}

func TestCancelledChildScopeEndsAloneParentStays(t *testing.T) {
	var calls atomic.Int64
	r := txSession(nil, "A", &calls)
	ctx, parent := scoped.Begin(context.Background())
	defer parent.Remove()
	p := mustCurrent(t, r, ctx)

	narrow, cancel := context.WithCancel(ctx) // say, a per-step timeout
	childCtx, child := scoped.Begin(narrow)
	c := mustCurrent(t, r, childCtx)
	cancel()
	eventually(t, "child safety net", func() bool { return c.rollbacks.Load() == 1 })
	if err := child.Remove(); err != nil {
		t.Fatal(err)
	}
	if parent.Err() != nil || p.rollbacks.Load() != 0 {
		t.Fatal("cancelling a child's context ended its parent")
	}
	if got := mustCurrent(t, r, ctx); got != p {
		t.Fatal("parent lost its session")
	}
}

func TestDetachKeepsValuesNotCancellation(t *testing.T) {
	baseline := scoped.LiveScopes()
	var calls atomic.Int64
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{id: calls.Add(1), tag: ctx.Value(valueKey{})}, nil
	}, scoped.WithTeardownErrorHook(nil))
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), valueKey{}, "req-7"))
	reqCtx, reqScope := scoped.Begin(parent)
	reqTx := mustCurrent(t, r, reqCtx)

	bgCtx, bgScope := scoped.Detach(reqCtx)
	if s, _ := scoped.FromContext(bgCtx); s != bgScope || s == reqScope {
		t.Fatal("the detached context does not carry the detached scope")
	}
	bgTx := mustCurrent(t, r, bgCtx)
	if bgTx == reqTx {
		t.Fatal("a detached scope shares the request's session")
	}
	if bgTx.tag != "req-7" {
		t.Fatalf("detached factory saw value %v, want the request's", bgTx.tag)
	}

	// The request ends: cancelled, then removed.
	cancel()
	if err := reqScope.Remove(); err != nil {
		t.Fatal(err)
	}
	if reqTx.rollbacks.Load() != 1 {
		t.Fatal("request session not rolled back")
	}
	if err := bgCtx.Err(); err != nil {
		t.Fatalf("the detached context was cancelled with the request: %v", err)
	}
	if err := bgScope.Err(); err != nil || bgTx.rollbacks.Load() != 0 {
		t.Fatalf("the detached scope ended with the request (Err %v, rollbacks %d)", err, bgTx.rollbacks.Load())
	}
	if got := mustCurrent(t, r, bgCtx); got != bgTx {
		t.Fatal("detached scope lost its session")
	}
	if n := scoped.LiveScopes() - baseline; n != 1 {
		t.Fatalf("LiveScopes grew by %d with the detached scope open, want 1", n)
	}

	// It must be removed by its owner.
	if err := bgScope.Remove(); err != nil {
		t.Fatal(err)
	}
	if bgTx.rollbacks.Load() != 1 {
		t.Fatal("detached session not rolled back by its Remove")
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d, want %d", n, baseline)
	}
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

func TestScopeLenCountsReadySessions(t *testing.T) {
	var calls atomic.Int64
	a := txSession(nil, "A", &calls)
	b := txSession(nil, "B", &calls)
	ctx, scope := scoped.Begin(context.Background())
	check := func(when string, want int) {
		t.Helper()
		if n := scope.Len(); n != want {
			t.Fatalf("%s: Len = %d, want %d", when, n, want)
		}
	}
	check("fresh", 0)
	mustCurrent(t, a, ctx)
	check("one session", 1)
	mustCurrent(t, b, ctx)
	mustCurrent(t, a, ctx)
	check("two sessions", 2)
	if err := a.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	check("after ScopedSession.Remove", 1)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	check("after Remove", 0)
}

func TestNoGoroutinePerScope(t *testing.T) {
	const scopes = 200
	var calls atomic.Int64
	r := txSession(nil, "A", &calls)
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := runtime.NumGoroutine()
	ends := make([]*scoped.Scope, 0, scopes)
	for range scopes {
		// Scopes holding a session on a cancellable context: the ones
		// with a safety net.
		ctx, scope := scoped.Begin(parent)
		mustCurrent(t, r, ctx)
		ends = append(ends, scope)
	}
	// Goroutines of earlier tests may still be exiting; a goroutine per
	// scope would add hundreds.
	if grown := runtime.NumGoroutine() - before; grown > 10 {
		t.Fatalf("%d goroutines more with %d scopes open", grown, scopes)
	}
	for _, s := range ends {
		if err := s.Remove(); err != nil {
			t.Fatal(err)
		}
	}
}
