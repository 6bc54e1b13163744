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
	testkit.WaitFor(t, inRollback, "teardown start")
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
	testkit.WaitFor(t, started, "factory start")

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
	testkit.WaitFor(t, wctx.waiting, "second caller waiting")
	cancel2()
	if err := testkit.WaitFor(t, waiter, "waiter to give up"); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter = %v, want context.Canceled", err)
	}

	close(release)
	if err := testkit.WaitFor(t, creator, "creator"); err != nil {
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
	rec := &testkit.Log{}
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
	testkit.WaitFor(t, started, "factory start")
	wctx := newWaitCtx(ctx)
	waiter := make(chan error, 1)
	go func() {
		_, err := r.Current(wctx)
		waiter <- err
	}()
	testkit.WaitFor(t, wctx.waiting, "second caller waiting")

	if err := scope.Remove(); err != nil {
		t.Fatalf("Remove with a creation in flight = %v", err)
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d after Remove, want %d", n, baseline)
	}
	close(release)

	res := testkit.WaitFor(t, creator, "creator")
	if !errors.Is(res.err, scoped.ErrScopeClosed) || res.s != nil {
		t.Fatalf("Current whose scope ended while the factory ran = %v, %v; want nil, ErrScopeClosed", res.s, res.err)
	}
	if err := testkit.WaitFor(t, waiter, "waiter"); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("waiter = %v, want ErrScopeClosed", err)
	}
	if ev := rec.List(); !equal(ev, []string{"rollback late"}) {
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

// A scope that nothing has touched ends without its lock. Whatever races
// that end (a first Current, a hook, a child scope) either sees the scope
// closed or is seen by the end: no session is created for an ended scope
// and left open, no hook is accepted and then neither run nor refused,
// and no child outlives its parent.
func TestEndOfAnUntouchedScopeRacesRegistrations(t *testing.T) {
	var created, ended atomic.Int64
	txs := scoped.New(func(context.Context) (*countedTx, error) {
		created.Add(1)
		return &countedTx{ended: &ended}, nil
	})
	for i := range 3000 {
		ctx, scope := scoped.Begin(context.Background())
		var ran atomic.Bool
		var hookErr, curErr error
		var child *scoped.Scope
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			switch i % 3 {
			case 0:
				_, curErr = txs.Current(ctx)
			case 1:
				hookErr = scoped.OnCommit(ctx, func(context.Context) { ran.Store(true) })
			case 2:
				_, child = scoped.Begin(ctx)
			}
		}()
		go func() { defer wg.Done(); _ = scope.Commit() }()
		wg.Wait()
		switch i % 3 {
		case 0:
			if curErr != nil && !errors.Is(curErr, scoped.ErrScopeClosed) {
				t.Fatalf("Current racing the end: %v", curErr)
			}
		case 1:
			if hookErr == nil && !ran.Load() {
				t.Fatal("a hook was accepted by a scope whose commit never ran it")
			}
			if hookErr != nil && !errors.Is(hookErr, scoped.ErrScopeClosed) {
				t.Fatalf("OnCommit racing the end: %v", hookErr)
			}
		case 2:
			if child.Err() == nil {
				t.Fatal("a child scope is open after its parent ended")
			}
		}
	}
	if c, e := created.Load(), ended.Load(); c != e {
		t.Fatalf("%d sessions created, %d ended", c, e)
	}
	if n := scoped.LiveScopes(); n != 0 {
		t.Fatalf("%d scopes left open", n)
	}
}

type countedTx struct{ ended *atomic.Int64 }

func (t *countedTx) Commit() error   { t.ended.Add(1); return nil }
func (t *countedTx) Rollback() error { t.ended.Add(1); return nil }
