package scoped_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

type tenantKey struct{}

func withTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, tenant)
}

// tenantSession keys its sessions on the tenant in the context.
func tenantSession(rec *testkit.Log, calls *atomic.Int64) *scoped.ScopedSession[*fakeTx] {
	return scoped.New(func(ctx context.Context) (*fakeTx, error) {
		id := calls.Add(1)
		tenant, _ := ctx.Value(tenantKey{}).(string)
		return &fakeTx{name: tenant, id: id, rec: rec}, nil
	}, scoped.WithScopeFunc(scoped.ContextValue(tenantKey{})), scoped.WithTeardownErrorHook(nil))
}

func TestContextValueKeyIsSharedAcrossScopesAndOutlivesThem(t *testing.T) {
	var calls atomic.Int64
	rec := &testkit.Log{}
	r := tenantSession(rec, &calls)
	defer r.Close()

	const scopes = 2
	start := make(chan struct{})
	ctxs := make([]context.Context, scopes)
	ends := make([]*scoped.Scope, scopes)
	got := make([]*fakeTx, scopes)
	var wg sync.WaitGroup
	wg.Add(scopes)
	for i := range scopes {
		ctxs[i], ends[i] = scoped.Begin(withTenant(context.Background(), "acme"))
		go func() {
			defer wg.Done()
			<-start
			got[i], _ = r.Current(ctxs[i])
		}()
	}
	close(start)
	wg.Wait()
	if got[0] == nil || got[0] != got[1] {
		t.Fatalf("two scopes with the same key got %p and %p, want one shared session", got[0], got[1])
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("factory called %d times for one key", n)
	}
	other := mustCurrent(t, r, withTenant(context.Background(), "globex"))
	if other == got[0] {
		t.Fatal("two keys share a session")
	}

	// Ending the scopes, including the one that created it, does not end it.
	for _, s := range ends {
		if err := s.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	if got[0].rollbacks.Load() != 0 {
		t.Fatal("a keyed session was torn down by the scope that happened to create it")
	}
	acme := withTenant(context.Background(), "acme")
	if !r.Has(acme) {
		t.Fatal("keyed session gone after its scopes ended")
	}

	// Remove with a context mapping to the same key ends it.
	if err := r.Remove(acme); err != nil {
		t.Fatal(err)
	}
	if n := got[0].rollbacks.Load(); n != 1 {
		t.Fatalf("Remove(ctx with the key) rolled back %d times, want 1", n)
	}
	if r.Has(acme) || !r.Has(withTenant(context.Background(), "globex")) {
		t.Fatal("Remove of one key must end that key's session only")
	}
	if again := mustCurrent(t, r, acme); again == got[0] || calls.Load() != 3 {
		t.Fatal("Current after Remove(ctx with the key) did not create a new session")
	}
}

func TestCloseEndsKeyedSessionsNewestFirst(t *testing.T) {
	var calls atomic.Int64
	rec := &testkit.Log{}
	r := tenantSession(rec, &calls)
	for _, tenant := range []string{"a", "b", "c"} {
		mustCurrent(t, r, withTenant(context.Background(), tenant))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"rollback c", "rollback b", "rollback a"}; !equal(rec.List(), want) {
		t.Fatalf("Close ended %v, want %v", rec.List(), want)
	}
	if _, err := r.Current(withTenant(context.Background(), "a")); !errors.Is(err, scoped.ErrClosed) {
		t.Fatalf("Current after Close = %v, want ErrClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if len(rec.List()) != 3 {
		t.Fatalf("second Close ended sessions again: %v", rec.List())
	}
	if st := r.Stats(); st.Live != 0 || st.RolledBack != 3 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestCloseJoinsKeyedTeardownErrors(t *testing.T) {
	errA := errors.New("a failed")
	errB := errors.New("b failed")
	sink := &testkit.Errors{}
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		tenant := ctx.Value(tenantKey{}).(string)
		return &fakeTx{name: tenant, rollbackErr: map[string]error{"a": errA, "b": errB}[tenant]}, nil
	}, scoped.WithScopeFunc(scoped.ContextValue(tenantKey{})), scoped.WithTeardownErrorHook(sink.Hook))
	var txs []*fakeTx
	for _, tenant := range []string{"a", "b", "c"} {
		txs = append(txs, mustCurrent(t, r, withTenant(context.Background(), tenant)))
	}
	err := r.Close()
	if !errors.Is(err, errA) || !errors.Is(err, errB) {
		t.Fatalf("Close = %v, want both errors joined", err)
	}
	for _, tx := range txs {
		if tx.rollbacks.Load() != 1 {
			t.Fatalf("%s rolled back %d times", tx.name, tx.rollbacks.Load())
		}
	}
	if n := len(sink.List()); n != 2 {
		t.Fatalf("hook called %d times, want 2", n)
	}
}

func TestCloseWhileKeyedFactoryRunsEndsLateSession(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	var created *fakeTx
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		close(started)
		<-release
		created = &fakeTx{}
		return created, nil
	}, scoped.WithScopeFunc(scoped.ContextValue(tenantKey{})), scoped.WithTeardownErrorHook(nil))
	ctx := withTenant(context.Background(), "acme")
	res := make(chan error, 1)
	go func() {
		_, err := r.Current(ctx)
		res <- err
	}()
	testkit.WaitFor(t, started, "factory start")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := testkit.WaitFor(t, res, "creator"); !errors.Is(err, scoped.ErrClosed) {
		t.Fatalf("Current whose ScopedSession closed meanwhile = %v, want ErrClosed", err)
	}
	if n := created.rollbacks.Load(); n != 1 {
		t.Fatalf("late session rolled back %d times, want 1", n)
	}
	if st := r.Stats(); st.Live != 0 {
		t.Fatalf("Stats = %+v, want Live 0", st)
	}
}

func TestCloseRefusesNewSessionsInScopes(t *testing.T) {
	var calls atomic.Int64
	r := txSession(nil, "A", &calls)
	ctx, scope := scoped.Begin(context.Background())
	tx := mustCurrent(t, r, ctx)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	ctx2, scope2 := scoped.Begin(context.Background())
	if _, err := r.Current(ctx2); !errors.Is(err, scoped.ErrClosed) {
		t.Fatalf("Current after Close = %v, want ErrClosed", err)
	}
	// Sessions held by scopes end with their scopes.
	if tx.rollbacks.Load() != 0 {
		t.Fatal("Close ended a session held by a scope")
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := scope2.Remove(); err != nil {
		t.Fatal(err)
	}
	if tx.rollbacks.Load() != 1 {
		t.Fatal("session not ended with its scope after Close")
	}
}

func TestKeyedCurrentCallsFactoryOnceUnderContention(t *testing.T) {
	const goroutines = 64
	var calls, waiters atomic.Int64
	allWaiting := make(chan struct{})
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		id := calls.Add(1)
		select { // held open until every other caller waits for it
		case <-allWaiting:
		case <-time.After(bound):
		}
		return &fakeTx{id: id}, nil
	}, scoped.WithScopeFunc(scoped.ContextValue(tenantKey{})), scoped.WithTeardownErrorHook(nil))
	start := make(chan struct{})
	got := make([]*fakeTx, goroutines)
	var wg sync.WaitGroup
	wg.Add(goroutines)
	for i := range goroutines {
		// Each goroutine has its own scope; all share the key.
		ctx, scope := scoped.Begin(withTenant(context.Background(), "acme"))
		wctx := newWaitCtx(ctx)
		wctx.onWait = func() {
			if waiters.Add(1) == goroutines-1 {
				close(allWaiting)
			}
		}
		go func() {
			defer wg.Done()
			defer scope.Remove()
			<-start
			got[i], _ = r.Current(wctx)
		}()
	}
	close(start)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("factory called %d times for one key", n)
	}
	for i := range got {
		if got[i] == nil || got[i] != got[0] {
			t.Fatalf("goroutine %d got %p, goroutine 0 got %p", i, got[i], got[0])
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n := got[0].rollbacks.Load(); n != 1 {
		t.Fatalf("rolled back %d times", n)
	}
}

func TestKeyedFactoryContextHasValuesWithoutCancellation(t *testing.T) {
	var fctx context.Context
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		fctx = ctx
		return &fakeTx{}, nil
	}, scoped.WithScopeFunc(scoped.ContextValue(tenantKey{})), scoped.WithTeardownErrorHook(nil))
	defer r.Close()
	ctx, cancel := context.WithCancel(withTenant(context.Background(), "acme"))
	mustCurrent(t, r, ctx)
	cancel()
	if fctx.Value(tenantKey{}) != "acme" {
		t.Fatal("keyed factory context lacks the caller's values")
	}
	if err := fctx.Err(); err != nil {
		t.Fatalf("keyed session's factory context ends with its first caller: %v", err)
	}
}

func TestKeyedFactoryErrorLeavesNothingRegistered(t *testing.T) {
	errDown := errors.New("down")
	var calls atomic.Int64
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		if calls.Add(1) == 1 {
			return nil, errDown
		}
		return &fakeTx{}, nil
	}, scoped.WithScopeFunc(scoped.ContextValue(tenantKey{})), scoped.WithTeardownErrorHook(nil))
	defer r.Close()
	ctx := withTenant(context.Background(), "acme")
	if _, err := r.Current(ctx); !errors.Is(err, errDown) {
		t.Fatalf("Current = %v, want %v wrapped", err, errDown)
	}
	if r.Has(ctx) {
		t.Fatal("Has = true after the factory failed")
	}
	mustCurrent(t, r, ctx)
	if n := calls.Load(); n != 2 {
		t.Fatalf("factory called %d times, want a retry", n)
	}
}

func TestUnhashableScopeKeysAreErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  any
	}{
		{"slice", []int{1}},
		{"map", map[string]int{"a": 1}},
		{"func", func() {}},
		{"struct holding a slice in an interface field", struct{ v any }{[]int{1}}},
		{"array holding a map", [1]any{map[int]int{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
				calls.Add(1)
				return &fakeTx{}, nil
			}, scoped.WithScopeFunc(func(context.Context) (any, bool) { return tc.key, true }))
			ctx, scope := scoped.Begin(context.Background())
			defer scope.Remove()
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("panicked on a %s key: %v", tc.name, p)
				}
			}()
			if _, err := r.Current(ctx); !errors.Is(err, scoped.ErrInvalidKey) {
				t.Fatalf("Current = %v, want ErrInvalidKey", err)
			}
			if r.Has(ctx) {
				t.Fatal("Has = true")
			}
			if err := r.Remove(ctx); !errors.Is(err, scoped.ErrInvalidKey) {
				t.Fatalf("Remove = %v, want ErrInvalidKey", err)
			}
			if calls.Load() != 0 {
				t.Fatal("factory ran for an invalid key")
			}
		})
	}
}

func TestScopeFuncWithoutKeyIsErrNoScope(t *testing.T) {
	var calls atomic.Int64
	r := tenantSession(nil, &calls)
	ctx, scope := scoped.Begin(context.Background()) // in a scope, but no tenant
	defer scope.Remove()
	if _, err := r.Current(ctx); !errors.Is(err, scoped.ErrNoScope) {
		t.Fatalf("Current without the key's value = %v, want ErrNoScope", err)
	}
	if _, err := r.Current(context.WithValue(ctx, tenantKey{}, nil)); !errors.Is(err, scoped.ErrNoScope) {
		t.Fatalf("Current with a nil value = %v, want ErrNoScope", err)
	}
	if calls.Load() != 0 {
		t.Fatal("factory ran without a key")
	}
}

func TestKeyedCurrentFromEndedScopeIsErrScopeClosed(t *testing.T) {
	var calls atomic.Int64
	r := tenantSession(nil, &calls)
	defer r.Close()
	ctx, scope := scoped.Begin(withTenant(context.Background(), "acme"))
	tx := mustCurrent(t, r, ctx)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Current(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current from an ended scope = %v, want ErrScopeClosed", err)
	}
	// A late caller from an ended scope with a key not yet created must
	// not create one either.
	other, otherScope := scoped.Begin(withTenant(context.Background(), "globex"))
	_ = otherScope.Remove()
	if _, err := r.Current(other); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current from an ended scope = %v, want ErrScopeClosed", err)
	}
	if calls.Load() != 1 {
		t.Fatal("factory ran for a caller whose scope had ended")
	}
	// The session is still there for live callers.
	if got := mustCurrent(t, r, withTenant(context.Background(), "acme")); got != tx {
		t.Fatal("keyed session lost")
	}
}

func TestScopeFuncReturningTheScopeBehavesLikeTheDefault(t *testing.T) {
	var calls atomic.Int64
	r := txSession(nil, "A", &calls, scoped.WithScopeFunc(scoped.ScopeToken))
	ctx, scope := scoped.Begin(context.Background())
	tx := mustCurrent(t, r, ctx)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if tx.rollbacks.Load() != 1 {
		t.Fatal("a session keyed on the scope token did not end with its scope")
	}
	if _, err := r.Current(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current = %v, want ErrScopeClosed", err)
	}
	if _, err := r.Current(context.Background()); !errors.Is(err, scoped.ErrNoScope) {
		t.Fatalf("Current outside a scope = %v, want ErrNoScope", err)
	}
}
