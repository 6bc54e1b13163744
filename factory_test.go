package scoped_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

type valueKey struct{}

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
	testkit.WaitFor(t, started, "factory start")

	// A second caller waits for the creation in flight.
	wctx := newWaitCtx(ctx)
	waiterErr := make(chan error, 1)
	go func() {
		_, err := r.Current(wctx)
		waiterErr <- err
	}()
	testkit.WaitFor(t, wctx.waiting, "second caller waiting")
	close(release)

	p := testkit.WaitFor(t, panicked, "panic")
	if b, ok := p.(boom); !ok || b.msg != "factory exploded" {
		t.Fatalf("the caller that ran the factory recovered %#v, want the factory's panic value", p)
	}
	if err := testkit.WaitFor(t, waiterErr, "waiter"); !errors.Is(err, scoped.ErrFactoryPanicked) {
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
	testkit.WaitFor(t, fctx.Done(), "factory context done after the Begin context was cancelled")
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
