package scoped_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(scopedtest.CheckScopesM(m)) }

// bound is how long a test waits for something that must happen before it
// fails instead of hanging. It is never a timing assertion.
const bound = testkit.Bound

// fakeTx is a pgx-style transaction: Commit(ctx) and Rollback(ctx).
type fakeTx struct {
	name string
	id   int64
	tag  any // a context value the factory saw
	rec  *testkit.Log

	commitErr, rollbackErr error
	rollbackPanic          any
	onRollback             func(ctx context.Context)

	commits, rollbacks atomic.Int32
}

func (t *fakeTx) Commit(ctx context.Context) error {
	t.commits.Add(1)
	t.rec.Add("commit %s", t.name)
	return t.commitErr
}

func (t *fakeTx) Rollback(ctx context.Context) error {
	t.rollbacks.Add(1)
	t.rec.Add("rollback %s", t.name)
	if t.onRollback != nil {
		t.onRollback(ctx)
	}
	if t.rollbackPanic != nil {
		panic(t.rollbackPanic)
	}
	return t.rollbackErr
}

// fakeConn is an io.Closer.
type fakeConn struct {
	name     string
	rec      *testkit.Log
	closeErr error
	closes   atomic.Int32
}

func (c *fakeConn) Close() error {
	c.closes.Add(1)
	c.rec.Add("close %s", c.name)
	return c.closeErr
}

// txSession returns a ScopedSession of fakeTx named name whose factory
// counts its calls in calls.
func txSession(rec *testkit.Log, name string, calls *atomic.Int64, opts ...scoped.Option) *scoped.ScopedSession[*fakeTx] {
	opts = append([]scoped.Option{scoped.WithName(name), scoped.WithTeardownErrorHook(nil)}, opts...)
	return scoped.New(func(ctx context.Context) (*fakeTx, error) {
		id := calls.Add(1)
		return &fakeTx{name: name, id: id, rec: rec}, nil
	}, opts...)
}

func connSession(rec *testkit.Log, name string, closeErr error) *scoped.ScopedSession[*fakeConn] {
	return scoped.New(func(ctx context.Context) (*fakeConn, error) {
		return &fakeConn{name: name, rec: rec, closeErr: closeErr}, nil
	}, scoped.WithName(name), scoped.WithTeardownErrorHook(nil))
}

// waitCtx wraps a context and reports, once, that a caller has started
// waiting on it: Current only asks a context for Done when it waits for a
// session that another caller is creating.
type waitCtx struct {
	context.Context
	once    sync.Once
	waiting chan struct{}
	onWait  func() // optional, run once with waiting
}

func newWaitCtx(ctx context.Context) *waitCtx {
	return &waitCtx{Context: ctx, waiting: make(chan struct{})}
}

func (c *waitCtx) Done() <-chan struct{} {
	c.once.Do(func() {
		close(c.waiting)
		if c.onWait != nil {
			c.onWait()
		}
	})
	return c.Context.Done()
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func mustCurrent[S any](t *testing.T, r *scoped.ScopedSession[S], ctx context.Context) S {
	t.Helper()
	s, err := r.Current(ctx)
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	return s
}

func recoverString(f func()) (s string) {
	defer func() {
		if p := recover(); p != nil {
			s = fmt.Sprint(p)
		}
	}()
	f()
	return ""
}

func TestCurrentReturnsSameSessionWithinScope(t *testing.T) {
	var calls atomic.Int64
	r := txSession(nil, "users", &calls)
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()

	a := mustCurrent(t, r, ctx)
	type k struct{}
	b := mustCurrent(t, r, context.WithValue(ctx, k{}, 1)) // a context derived from the scope's
	if a != b {
		t.Fatalf("two Current calls in one scope returned %p and %p", a, b)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("factory called %d times, want 1", n)
	}
	if !r.Has(ctx) {
		t.Fatal("Has = false after Current")
	}
}

func TestUnusedScopeCallsNoFactoryAndNoTeardown(t *testing.T) {
	baseline := scoped.LiveScopes()
	var calls atomic.Int64
	rec := &testkit.Log{}
	r := txSession(rec, "users", &calls)
	ctx, scope := scoped.Begin(context.Background())
	if r.Has(ctx) {
		t.Fatal("Has = true in a fresh scope")
	}
	if n := scoped.LiveScopes() - baseline; n != 1 {
		t.Fatalf("LiveScopes grew by %d after Begin, want 1", n)
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("factory called %d times in a scope that never asked", n)
	}
	if ev := rec.List(); len(ev) != 0 {
		t.Fatalf("teardown ran in a scope without sessions: %v", ev)
	}
	if st := r.Stats(); st != (scoped.Stats{}) {
		t.Fatalf("Stats = %+v, want zero", st)
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d, want %d", n, baseline)
	}
}

func TestCurrentAfterRemoveIsErrScopeClosed(t *testing.T) {
	var calls atomic.Int64
	r := txSession(nil, "users", &calls)
	ctx, scope := scoped.Begin(context.Background())
	tx := mustCurrent(t, r, ctx)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := scope.Err(); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Scope.Err after Remove = %v, want ErrScopeClosed", err)
	}
	for range 2 {
		s, err := r.Current(ctx)
		if !errors.Is(err, scoped.ErrScopeClosed) || s != nil {
			t.Fatalf("Current after Remove = %v, %v; want nil, ErrScopeClosed", s, err)
		}
	}
	if r.Has(ctx) {
		t.Fatal("Has = true after Remove")
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("factory called %d times: a removed scope re-created its session", n)
	}
	// Removing again is a no-op.
	if err := scope.Remove(); err != nil {
		t.Fatalf("second Remove = %v", err)
	}
	if n := tx.rollbacks.Load(); n != 1 || tx.commits.Load() != 0 {
		t.Fatalf("rollbacks = %d, commits = %d; want 1, 0", n, tx.commits.Load())
	}
}

func TestCurrentOutsideScopeIsErrNoScope(t *testing.T) {
	var calls atomic.Int64
	r := txSession(nil, "users", &calls)
	ctx := context.Background()
	if _, err := r.Current(ctx); !errors.Is(err, scoped.ErrNoScope) {
		t.Fatalf("Current outside a scope = %v, want ErrNoScope", err)
	}
	if r.Has(ctx) {
		t.Fatal("Has = true outside a scope")
	}
	if err := r.Remove(ctx); !errors.Is(err, scoped.ErrNoScope) {
		t.Fatalf("Remove outside a scope = %v, want ErrNoScope", err)
	}
	if _, ok := scoped.FromContext(ctx); ok {
		t.Fatal("FromContext found a scope in context.Background()")
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("factory called %d times outside a scope", n)
	}
}

func TestScopedSessionRemoveEndsOnlyThatSession(t *testing.T) {
	rec := &testkit.Log{}
	var callsA, callsB atomic.Int64
	a := txSession(rec, "A", &callsA)
	b := txSession(rec, "B", &callsB)
	ctx, scope := scoped.Begin(context.Background())
	a1 := mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)

	if err := a.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if a1.rollbacks.Load() != 1 {
		t.Fatal("ScopedSession.Remove did not roll back its session")
	}
	if a.Has(ctx) || !b.Has(ctx) {
		t.Fatalf("after A.Remove: A.Has %v, B.Has %v; want false, true", a.Has(ctx), b.Has(ctx))
	}
	if err := scope.Err(); err != nil {
		t.Fatalf("scope ended by ScopedSession.Remove: %v", err)
	}
	if err := a.Remove(ctx); err != nil {
		t.Fatalf("Remove without a session = %v, want nil", err)
	}
	a2 := mustCurrent(t, a, ctx)
	if a2 == a1 || callsA.Load() != 2 {
		t.Fatalf("Current after ScopedSession.Remove reused %p (calls %d), want a new session", a2, callsA.Load())
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"rollback A", "rollback A", "rollback B"}; !equal(rec.List(), want) {
		t.Fatalf("events %v, want %v", rec.List(), want)
	}
	if a1.rollbacks.Load() != 1 || a2.rollbacks.Load() != 1 {
		t.Fatal("a session was ended twice")
	}
}

func TestScopedSessionCommitCommitsThatSession(t *testing.T) {
	rec := &testkit.Log{}
	var callsA, callsB atomic.Int64
	a := txSession(rec, "A", &callsA)
	b := txSession(rec, "B", &callsB)
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Has(ctx) || scope.Err() != nil {
		t.Fatal("after ScopedSession.Commit the session must be gone and the scope open")
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"commit A", "rollback B"}; !equal(rec.List(), want) {
		t.Fatalf("events %v, want %v", rec.List(), want)
	}
	if st := a.Stats(); st.Committed != 1 || st.Live != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestScopedSessionStringIsItsName(t *testing.T) {
	var calls atomic.Int64
	if s := fmt.Sprint(txSession(nil, "users", &calls)); s != "users" {
		t.Fatalf("String = %q, want the WithName name", s)
	}
	if s := fmt.Sprint(scoped.New(func(context.Context) (*fakeTx, error) { return nil, nil })); s != "*scoped_test.fakeTx" {
		t.Fatalf("String = %q, want the session type", s)
	}
}
