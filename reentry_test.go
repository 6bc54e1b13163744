package scoped_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// A factory that asks for its own session, directly or through another
// factory, gets ErrReentrant at once instead of waiting for itself (under
// context.Background it used to wait forever).
func TestFactoryAskingForItsOwnSessionIsErrReentrant(t *testing.T) {
	t.Run("directly", func(t *testing.T) {
		var self *scoped.ScopedSession[*fakeTx]
		var inner error
		self = scoped.New(func(ctx context.Context) (*fakeTx, error) {
			_, inner = self.Current(ctx)
			return &fakeTx{name: "self"}, nil
		}, scoped.WithTeardownErrorHook(nil))
		ctx, scope := scoped.Begin(context.Background())
		defer scope.Remove()
		done := make(chan error, 1)
		go func() { _, err := self.Current(ctx); done <- err }()
		if err := testkit.WaitFor(t, done, "Current"); err != nil {
			t.Fatalf("outer Current: %v", err)
		}
		if !errors.Is(inner, scoped.ErrReentrant) {
			t.Fatalf("the factory's own Current returned %v, want ErrReentrant", inner)
		}
	})
	t.Run("through another factory", func(t *testing.T) {
		var a, b *scoped.ScopedSession[*fakeTx]
		var inner error
		a = scoped.New(func(ctx context.Context) (*fakeTx, error) {
			if _, err := b.Current(ctx); err != nil {
				return nil, err
			}
			return &fakeTx{name: "a"}, nil
		}, scoped.WithTeardownErrorHook(nil))
		b = scoped.New(func(ctx context.Context) (*fakeTx, error) {
			_, inner = a.Current(ctx) // a is being created: its factory called us
			return &fakeTx{name: "b"}, nil
		}, scoped.WithTeardownErrorHook(nil))
		ctx, scope := scoped.Begin(context.Background())
		defer scope.Remove()
		done := make(chan error, 1)
		go func() { _, err := a.Current(ctx); done <- err }()
		if err := testkit.WaitFor(t, done, "Current"); err != nil {
			t.Fatalf("outer Current: %v", err)
		}
		if !errors.Is(inner, scoped.ErrReentrant) {
			t.Fatalf("b's factory asking for a returned %v, want ErrReentrant", inner)
		}
	})
	t.Run("keyed", func(t *testing.T) {
		type tenant struct{}
		var self *scoped.ScopedSession[*fakeTx]
		var inner error
		self = scoped.New(func(ctx context.Context) (*fakeTx, error) {
			_, inner = self.Current(ctx)
			return &fakeTx{name: "self"}, nil
		}, scoped.WithScopeFunc(scoped.ContextValue(tenant{})), scoped.WithTeardownErrorHook(nil))
		defer self.Close()
		ctx := context.WithValue(context.Background(), tenant{}, "t1")
		done := make(chan error, 1)
		go func() { _, err := self.Current(ctx); done <- err }()
		if err := testkit.WaitFor(t, done, "Current"); err != nil {
			t.Fatalf("outer Current: %v", err)
		}
		if !errors.Is(inner, scoped.ErrReentrant) {
			t.Fatalf("the factory's own Current returned %v, want ErrReentrant", inner)
		}
	})
}

// Concurrent first calls from other goroutines still wait for the one
// creation in flight: only the creation's own calls are refused.
func TestOtherCallersStillWaitForACreationInFlight(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		close(started)
		<-release
		return &fakeTx{name: "tx"}, nil
	})
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	first := make(chan *fakeTx, 1)
	go func() { s, _ := r.Current(ctx); first <- s }()
	testkit.WaitFor(t, started, "the factory")
	w := newWaitCtx(ctx)
	second := make(chan *fakeTx, 1)
	go func() { s, _ := r.Current(w); second <- s }()
	testkit.WaitFor(t, w.waiting, "the second caller waiting")
	close(release)
	if a, b := testkit.WaitFor(t, first, "first"), testkit.WaitFor(t, second, "second"); a == nil || a != b {
		t.Fatalf("callers got %p and %p, want the same session", a, b)
	}
}

// A teardown that ends its own scope gets ErrReentrant instead of waiting
// for the teardown it is part of (it used to deadlock for good), and the
// scope still ends completely.
func TestTeardownEndingItsOwnScopeIsErrReentrant(t *testing.T) {
	for _, how := range []string{"Remove", "Commit"} {
		t.Run(how, func(t *testing.T) {
			var scope *scoped.Scope
			var inner error
			r := scoped.New(func(ctx context.Context) (*fakeConn, error) {
				return &fakeConn{name: "c"}, nil
			}, scoped.WithClose(func(_ context.Context, c *fakeConn) error {
				if how == "Remove" {
					inner = scope.Remove()
				} else {
					inner = scope.Commit()
				}
				return nil
			}))
			var ctx context.Context
			ctx, scope = scoped.Begin(context.Background())
			mustCurrent(t, r, ctx)
			done := make(chan error, 1)
			go func() { done <- scope.Remove() }()
			if err := testkit.WaitFor(t, done, "Remove"); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if !errors.Is(inner, scoped.ErrReentrant) {
				t.Fatalf("the teardown's %s returned %v, want ErrReentrant", how, inner)
			}
			if r.Stats().Live != 0 || scope.Err() == nil {
				t.Fatalf("scope not fully ended: %+v", r.Stats())
			}
		})
	}
}
