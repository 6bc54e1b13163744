package scoped_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	creation "github.com/go-scoped/scoped/internal/bound"
	"github.com/go-scoped/scoped/internal/testkit"
)

type boundKey struct{}

var errBoundCause = errors.New("client went away")

// boundFactory returns a factory that takes the creation bound, derives a
// context from it as database/sql's BeginTx does, reports it on got, and
// then waits for release or for the derived context to end, returning
// Settle's verdict as its error.
func boundFactory(t *testing.T, got chan<- context.Context, release <-chan struct{}) func(context.Context) (*fakeTx, error) {
	return func(ctx context.Context) (*fakeTx, error) {
		src, ok := ctx.(creation.Source)
		if !ok {
			t.Error("the factory context is not a bound.Source")
			return nil, errors.New("no source")
		}
		b, ok := src.BoundCreation()
		if !ok {
			t.Error("no creation bound in a scope with a safety net")
			return nil, errors.New("no bound")
		}
		derived, cancel := context.WithCancel(b) // what database/sql's beginDC does
		t.Cleanup(cancel)
		got <- derived
		select {
		case <-release:
		case <-derived.Done():
		case <-time.After(testkit.Bound):
			t.Error("the begin was never released")
		}
		if err := b.Settle(); err != nil {
			return nil, err
		}
		return &fakeTx{name: "tx"}, nil
	}
}

// A scope's context ending while the factory runs ends the bound: the
// begin gives up with the context's cause, and nothing is registered.
func TestCreationBoundEndsTheBeginWhenTheScopeContextEnds(t *testing.T) {
	got := make(chan context.Context, 1)
	txs := scoped.New(boundFactory(t, got, nil), scoped.WithTeardownErrorHook(nil))
	parent, cancel := context.WithCancelCause(context.WithValue(context.Background(), boundKey{}, "v"))
	ctx, scope := scoped.Begin(parent)
	defer scope.Remove()

	errc := make(chan error, 1)
	go func() { _, err := txs.Current(ctx); errc <- err }()
	derived := <-got
	if derived.Value(boundKey{}) != "v" {
		t.Error("the bound lost the scope's values")
	}
	if _, ok := derived.Deadline(); ok {
		t.Error("the bound has a deadline: a driver would set it on the session's connection")
	}
	cancel(errBoundCause)
	var err error
	select {
	case err = <-errc:
	case <-time.After(testkit.Bound):
		t.Fatal("Current still runs after its scope's context ended")
	}
	if !errors.Is(err, errBoundCause) {
		t.Errorf("Current = %v, want the context's cause", err)
	}
	if derived.Err() != context.Canceled {
		t.Errorf("the derived context's Err = %v, want context.Canceled", derived.Err())
	}
	if txs.Has(ctx) {
		t.Error("a session is registered after the abandoned begin")
	}
	if err := scope.Err(); err != nil {
		t.Errorf("scope.Err = %v: the net ended a scope that held nothing", err)
	}
}

// A bound settled without firing is never done: what was begun with it
// outlives the scope's context, and the scope's safety net ends it.
func TestCreationBoundNeverEndsAfterSettle(t *testing.T) {
	got := make(chan context.Context, 1)
	release := make(chan struct{})
	close(release)
	rolledBack := make(chan struct{})
	txs := scoped.New(boundFactory(t, got, release), scoped.WithTeardownErrorHook(nil),
		scoped.WithRollback(func(context.Context, *fakeTx) error { close(rolledBack); return nil }))
	parent, cancel := context.WithCancel(context.Background())
	ctx, scope := scoped.Begin(parent)
	defer scope.Remove()
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	derived := <-got
	cancel()
	select {
	case <-rolledBack:
	case <-time.After(testkit.Bound):
		t.Fatal("the safety net did not end the session")
	}
	select {
	case <-derived.Done():
		t.Error("the session's derived context ended with the scope's context after the begin")
	default:
	}
	if err := scope.Err(); !errors.Is(err, scoped.ErrScopeCancelled) {
		t.Errorf("scope.Err = %v, want ErrScopeCancelled", err)
	}
}

// Remove while a begin runs gives the begin up: its session would be
// ended the moment it existed.
func TestCreationBoundEndsWhenTheScopeIsRemoved(t *testing.T) {
	got := make(chan context.Context, 1)
	txs := scoped.New(boundFactory(t, got, nil), scoped.WithTeardownErrorHook(nil))
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx, scope := scoped.Begin(parent)

	errc := make(chan error, 1)
	go func() { _, err := txs.Current(ctx); errc <- err }()
	<-got
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, scoped.ErrScopeClosed) {
			t.Errorf("Current = %v, want ErrScopeClosed", err)
		}
	case <-time.After(testkit.Bound):
		t.Fatal("the begin still runs after Remove")
	}
}

// Where no safety net watches the creation, there is no bound, and the
// adapter must watch the context itself.
func TestCreationBoundOnlyUnderASafetyNet(t *testing.T) {
	offered := func(begin func(context.Context) (context.Context, *scoped.Scope), parent context.Context, opts ...scoped.Option) bool {
		var ok bool
		txs := scoped.New(func(ctx context.Context) (*fakeTx, error) {
			if src, is := ctx.(creation.Source); is {
				_, ok = src.BoundCreation()
			}
			return &fakeTx{}, nil
		}, append(opts, scoped.WithTeardownErrorHook(nil))...)
		ctx, scope := begin(parent)
		defer scope.Remove()
		if _, err := txs.Current(ctx); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !offered(scoped.Begin, parent) {
		t.Error("Begin on a cancellable context: no bound")
	}
	if offered(scoped.BeginWithoutSafetyNet, parent) {
		t.Error("BeginWithoutSafetyNet: a bound")
	}
	if offered(scoped.Begin, parent, scoped.WithoutSafetyNet()) {
		t.Error("a session WithoutSafetyNet: a bound")
	}
	if offered(scoped.Begin, context.Background()) {
		t.Error("a context never cancelled: a bound")
	}
}
