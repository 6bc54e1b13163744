package scoped_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/go-scoped/scoped"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// bound is how long a test waits for something that must happen before it
// fails instead of hanging. It is never a timing assertion.
const bound = 10 * time.Second

// recorder logs teardown events ("commit a", "rollback b", "close c") in
// the order they happen.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(format string, args ...any) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// fakeTx is a pgx-style transaction: Commit(ctx) and Rollback(ctx).
type fakeTx struct {
	name string
	id   int64
	tag  any // a context value the factory saw
	rec  *recorder

	commitErr, rollbackErr error
	rollbackPanic          any
	onRollback             func(ctx context.Context)

	commits, rollbacks atomic.Int32
}

func (t *fakeTx) Commit(ctx context.Context) error {
	t.commits.Add(1)
	t.rec.add("commit %s", t.name)
	return t.commitErr
}

func (t *fakeTx) Rollback(ctx context.Context) error {
	t.rollbacks.Add(1)
	t.rec.add("rollback %s", t.name)
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
	rec      *recorder
	closeErr error
	closes   atomic.Int32
}

func (c *fakeConn) Close() error {
	c.closes.Add(1)
	c.rec.add("close %s", c.name)
	return c.closeErr
}

// txSession returns a ScopedSession of fakeTx named name whose factory
// counts its calls in calls.
func txSession(rec *recorder, name string, calls *atomic.Int64, opts ...scoped.Option) *scoped.ScopedSession[*fakeTx] {
	opts = append([]scoped.Option{scoped.WithName(name), scoped.WithTeardownErrorHook(nil)}, opts...)
	return scoped.New(func(ctx context.Context) (*fakeTx, error) {
		id := calls.Add(1)
		return &fakeTx{name: name, id: id, rec: rec}, nil
	}, opts...)
}

// errSink collects what a teardown error hook receives.
type errSink struct {
	mu   sync.Mutex
	errs []error
}

func (s *errSink) hook(_ context.Context, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

func (s *errSink) list() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
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

// waitFor fails the test if ch is not closed (or sent on) within bound.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(bound):
		t.Fatalf("%s did not happen within %v", what, bound)
		var zero T
		return zero
	}
}

// eventually polls cond until it holds, failing after bound.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %v", what, bound)
		}
		time.Sleep(time.Millisecond)
	}
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

func TestCurrentCallsFactoryOncePerScopeUnderContention(t *testing.T) {
	const goroutines = 64
	var calls, waiters atomic.Int64
	allWaiting := make(chan struct{})
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		id := calls.Add(1)
		// A slow factory: it holds the creation open until every other
		// caller is waiting for it, so the race on the first Current is real.
		select {
		case <-allWaiting:
		case <-time.After(bound):
		}
		return &fakeTx{id: id}, nil
	}, scoped.WithTeardownErrorHook(nil))

	ctx, scope := scoped.Begin(context.Background())
	start := make(chan struct{})
	got := make([]*fakeTx, goroutines)
	var wg sync.WaitGroup
	for i := range goroutines {
		wctx := newWaitCtx(ctx)
		wctx.onWait = func() {
			if waiters.Add(1) == goroutines-1 {
				close(allWaiting)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s, err := r.Current(wctx)
			if err != nil {
				t.Errorf("goroutine %d: Current: %v", i, err)
			}
			got[i] = s
		}()
	}
	close(start) // the barrier: every goroutine calls Current at once
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("factory called %d times for one scope, want 1", n)
	}
	for i, s := range got {
		if s == nil || s != got[0] {
			t.Fatalf("goroutine %d got session %p, goroutine 0 got %p", i, s, got[0])
		}
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if n := got[0].rollbacks.Load(); n != 1 {
		t.Fatalf("session rolled back %d times, want 1", n)
	}
	if n := waiters.Load(); n != goroutines-1 {
		t.Fatalf("%d callers waited for the creation in flight, want %d", n, goroutines-1)
	}
}

func TestCurrentFirstCallRaceAcrossManyScopes(t *testing.T) {
	// No gating here: 64 goroutines per scope race on the first Current
	// while a slow factory yields, across several scopes in a row.
	const scopes, goroutines = 20, 64
	for range scopes {
		var calls atomic.Int64
		r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
			id := calls.Add(1)
			for range 50 {
				runtime.Gosched()
			}
			return &fakeTx{id: id}, nil
		}, scoped.WithTeardownErrorHook(nil))
		ctx, scope := scoped.Begin(context.Background())
		start := make(chan struct{})
		got := make([]*fakeTx, goroutines)
		var wg sync.WaitGroup
		wg.Add(goroutines)
		for i := range goroutines {
			go func() {
				defer wg.Done()
				<-start
				got[i], _ = r.Current(ctx)
			}()
		}
		close(start)
		wg.Wait()
		if n := calls.Load(); n != 1 {
			t.Fatalf("factory called %d times for one scope, want 1", n)
		}
		for i := range got {
			if got[i] == nil || got[i] != got[0] {
				t.Fatalf("goroutine %d got %p, goroutine 0 got %p", i, got[i], got[0])
			}
		}
		if err := scope.Remove(); err != nil {
			t.Fatal(err)
		}
		if n := got[0].rollbacks.Load(); n != 1 {
			t.Fatalf("rolled back %d times, want 1", n)
		}
	}
}

func TestConcurrentScopesNeverShareSessions(t *testing.T) {
	const scopes = 1000
	type tagKey struct{}
	type layerKey struct{}
	baseline := scoped.LiveScopes()
	var calls atomic.Int64
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		id := calls.Add(1)
		return &fakeTx{id: id, tag: ctx.Value(tagKey{})}, nil
	}, scoped.WithTeardownErrorHook(nil))

	start := make(chan struct{})
	allHolding := make(chan struct{})
	var holding, done sync.WaitGroup
	holding.Add(scopes)
	done.Add(scopes)
	for i := range scopes {
		go func() {
			defer done.Done()
			<-start
			ctx, scope := scoped.Begin(context.WithValue(context.Background(), tagKey{}, i))
			first, err := r.Current(ctx)
			holding.Done()
			if err != nil {
				t.Errorf("scope %d: Current: %v", i, err)
				<-allHolding
				_ = scope.Remove()
				return
			}
			if first.tag != i {
				t.Errorf("scope %d got the session created for scope %v", i, first.tag)
			}
			<-allHolding // every scope holds its session at the same time
			again, err := r.Current(context.WithValue(ctx, layerKey{}, i))
			if err != nil || again != first {
				t.Errorf("scope %d: second Current = %p, %v; want %p", i, again, err, first)
			}
			if err := scope.Remove(); err != nil {
				t.Errorf("scope %d: Remove: %v", i, err)
			}
			if n := first.rollbacks.Load(); n != 1 {
				t.Errorf("scope %d: session rolled back %d times, want 1", i, n)
			}
		}()
	}
	close(start)
	holding.Wait()
	if n := scoped.LiveScopes() - baseline; n != scopes {
		t.Errorf("LiveScopes grew by %d with %d scopes open", n, scopes)
	}
	if st := r.Stats(); st.Live != scopes {
		t.Errorf("Stats().Live = %d with %d sessions open", st.Live, scopes)
	}
	close(allHolding)
	done.Wait()

	if n := calls.Load(); n != scopes {
		t.Errorf("factory called %d times for %d scopes", n, scopes)
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Errorf("LiveScopes = %d after every scope ended, want %d", n, baseline)
	}
	st := r.Stats()
	if st.Live != 0 || st.Created != scopes || st.RolledBack != scopes || st.Failed != 0 {
		t.Errorf("Stats = %+v, want Live 0, Created %d, RolledBack %d, Failed 0", st, scopes, scopes)
	}
}

func TestUnusedScopeCallsNoFactoryAndNoTeardown(t *testing.T) {
	baseline := scoped.LiveScopes()
	var calls atomic.Int64
	rec := &recorder{}
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
	if ev := rec.list(); len(ev) != 0 {
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

func TestConcurrentRemoveTearsDownOnce(t *testing.T) {
	const removers = 16
	baseline := scoped.LiveScopes()
	inRollback := make(chan struct{})
	release := make(chan struct{})
	var finished atomic.Bool
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{onRollback: func(context.Context) {
			close(inRollback) // a second rollback would panic here
			<-release
			finished.Store(true)
		}}, nil
	}, scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(context.Background())
	tx := mustCurrent(t, r, ctx)

	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(removers)
	for i := range removers {
		go func() {
			defer wg.Done()
			<-start
			if err := scope.Remove(); err != nil {
				t.Errorf("remover %d: %v", i, err)
			}
			// Every Remove returns only once the scope is torn down, not
			// while another caller's teardown is still running.
			if !finished.Load() {
				t.Errorf("remover %d returned before the teardown finished", i)
			}
			if n := scoped.LiveScopes(); n != baseline {
				t.Errorf("remover %d returned with LiveScopes %d, want %d", i, n, baseline)
			}
		}()
	}
	close(start)
	waitFor(t, inRollback, "teardown start")
	// Give the other removers the chance to arrive while the teardown is
	// held (they must wait for it); the test does not depend on it.
	for range 1000 {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if n := tx.rollbacks.Load(); n != 1 {
		t.Fatalf("session rolled back %d times by %d concurrent Removes, want 1", n, removers)
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

func TestFactoryErrorIsWrappedAndRetried(t *testing.T) {
	errDown := errors.New("database down")
	var calls atomic.Int64
	fail := true
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		id := calls.Add(1)
		if fail {
			return nil, errDown
		}
		return &fakeTx{id: id}, nil
	}, scoped.WithName("users"), scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()

	s, err := r.Current(ctx)
	if !errors.Is(err, errDown) {
		t.Fatalf("Current = %v, want an error wrapping %v", err, errDown)
	}
	if s != nil {
		t.Fatalf("Current returned session %p with an error", s)
	}
	if !strings.Contains(err.Error(), "users") {
		t.Fatalf("error %q does not name the session", err)
	}
	if r.Has(ctx) {
		t.Fatal("Has = true after the factory failed")
	}
	if st := r.Stats(); st.Failed != 1 || st.Created != 0 || st.Live != 0 {
		t.Fatalf("Stats = %+v, want Failed 1, Created 0, Live 0", st)
	}

	fail = false
	tx := mustCurrent(t, r, ctx)
	if n := calls.Load(); n != 2 {
		t.Fatalf("factory called %d times, want a retry (2)", n)
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if tx.rollbacks.Load() != 1 {
		t.Fatal("the retried session was not rolled back")
	}
}

func TestFactoryPanicRepanicsAndLeavesNothingRegistered(t *testing.T) {
	type boom struct{ msg string }
	var calls atomic.Int64
	started := make(chan struct{})
	release := make(chan struct{})
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		if id := calls.Add(1); id > 1 {
			return &fakeTx{id: id}, nil
		}
		close(started)
		<-release
		panic(boom{"factory exploded"})
	}, scoped.WithName("users"), scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()

	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		_, _ = r.Current(ctx)
	}()
	waitFor(t, started, "factory start")

	// A second caller waits for the creation in flight.
	wctx := newWaitCtx(ctx)
	waiterErr := make(chan error, 1)
	go func() {
		_, err := r.Current(wctx)
		waiterErr <- err
	}()
	waitFor(t, wctx.waiting, "second caller waiting")
	close(release)

	p := waitFor(t, panicked, "panic")
	if b, ok := p.(boom); !ok || b.msg != "factory exploded" {
		t.Fatalf("the caller that ran the factory recovered %#v, want the factory's panic value", p)
	}
	if err := waitFor(t, waiterErr, "waiter"); !errors.Is(err, scoped.ErrFactoryPanicked) {
		t.Fatalf("waiter got %v, want ErrFactoryPanicked", err)
	}
	if r.Has(ctx) {
		t.Fatal("Has = true after the factory panicked")
	}
	if st := r.Stats(); st.Failed != 1 || st.Live != 0 {
		t.Fatalf("Stats = %+v, want Failed 1, Live 0", st)
	}

	// The next call tries again.
	tx := mustCurrent(t, r, ctx)
	if tx.id != 2 {
		t.Fatalf("retry got session %d, want 2", tx.id)
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if tx.rollbacks.Load() != 1 {
		t.Fatal("the retried session was not rolled back")
	}
}

func TestWaiterReturnsWhenItsContextIsDone(t *testing.T) {
	errGone := errors.New("client gone")
	started := make(chan struct{})
	release := make(chan struct{})
	var created *fakeTx
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		close(started)
		<-release
		created = &fakeTx{id: 1}
		return created, nil
	}, scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()

	creator := make(chan error, 1)
	go func() {
		_, err := r.Current(ctx)
		creator <- err
	}()
	waitFor(t, started, "factory start")

	// A caller whose context is already done does not wait.
	cctx, cancel := context.WithCancelCause(ctx)
	cancel(errGone)
	if _, err := r.Current(cctx); !errors.Is(err, errGone) {
		t.Fatalf("Current with a cancelled context while the factory runs = %v, want %v", err, errGone)
	}

	// A caller whose context ends while it waits stops waiting.
	c2, cancel2 := context.WithCancel(ctx)
	wctx := newWaitCtx(c2)
	waiter := make(chan error, 1)
	go func() {
		_, err := r.Current(wctx)
		waiter <- err
	}()
	waitFor(t, wctx.waiting, "second caller waiting")
	cancel2()
	if err := waitFor(t, waiter, "waiter to give up"); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter = %v, want context.Canceled", err)
	}

	close(release)
	if err := waitFor(t, creator, "creator"); err != nil {
		t.Fatalf("creator: %v", err)
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if n := created.rollbacks.Load(); n != 1 {
		t.Fatalf("session created while callers gave up was rolled back %d times, want 1", n)
	}
}

func TestRemoveWhileFactoryRunsEndsLateSession(t *testing.T) {
	baseline := scoped.LiveScopes()
	started := make(chan struct{})
	release := make(chan struct{})
	rec := &recorder{}
	var created *fakeTx
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		close(started)
		<-release
		created = &fakeTx{name: "late", rec: rec}
		return created, nil
	}, scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(context.Background())

	type result struct {
		s   *fakeTx
		err error
	}
	creator := make(chan result, 1)
	go func() {
		s, err := r.Current(ctx)
		creator <- result{s, err}
	}()
	waitFor(t, started, "factory start")
	wctx := newWaitCtx(ctx)
	waiter := make(chan error, 1)
	go func() {
		_, err := r.Current(wctx)
		waiter <- err
	}()
	waitFor(t, wctx.waiting, "second caller waiting")

	if err := scope.Remove(); err != nil {
		t.Fatalf("Remove with a creation in flight = %v", err)
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d after Remove, want %d", n, baseline)
	}
	close(release)

	res := waitFor(t, creator, "creator")
	if !errors.Is(res.err, scoped.ErrScopeClosed) || res.s != nil {
		t.Fatalf("Current whose scope ended while the factory ran = %v, %v; want nil, ErrScopeClosed", res.s, res.err)
	}
	if err := waitFor(t, waiter, "waiter"); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("waiter = %v, want ErrScopeClosed", err)
	}
	if ev := rec.list(); !equal(ev, []string{"rollback late"}) {
		t.Fatalf("events = %v, want the late session rolled back once", ev)
	}
	if r.Has(ctx) {
		t.Fatal("Has = true: the late session stayed registered")
	}
	if st := r.Stats(); st.Live != 0 || st.Created != 1 || st.RolledBack != 1 {
		t.Fatalf("Stats = %+v, want Live 0, Created 1, RolledBack 1", st)
	}
	if _, err := r.Current(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current after = %v, want ErrScopeClosed", err)
	}
}
