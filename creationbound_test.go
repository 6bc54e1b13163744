package scoped_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	creation "github.com/go-scoped/scoped/shared/bound"
)

var errBoundCause = errors.New("client went away")

// boundTarget is an adapter's bounded begin, as scopedsql's beginCtx:
// fired records the error its context would say from then on.
type boundTarget struct {
	fired chan struct{}
	err   error
}

func newBoundTarget() *boundTarget { return &boundTarget{fired: make(chan struct{})} }

func (b *boundTarget) Fire(err error) { b.err = err; close(b.fired) }

// watchedBegin is the factory of a begin waiting for a pooled connection,
// bounded only by the scope's net: it has target watched, closes watched
// (when not nil), waits until fired, and gives up with Unwatch's verdict.
func watchedBegin(target creation.Target, fired, watched chan struct{}) func(context.Context) (*fakeTx, error) {
	return func(fctx context.Context) (*fakeTx, error) {
		w := fctx.(creation.Watcher)
		if !w.Watch(target) {
			return nil, errors.New("no watch in a scope with a safety net")
		}
		if watched != nil {
			close(watched)
		}
		<-fired
		return nil, w.Unwatch()
	}
}

// boundFactory returns a factory that has its begin watched, reports it
// on got, and then waits for release or for the begin to be fired,
// returning Unwatch's verdict as its error.
func boundFactory(t *testing.T, got chan<- *boundTarget, release <-chan struct{}) func(context.Context) (*fakeTx, error) {
	return func(ctx context.Context) (*fakeTx, error) {
		w, ok := ctx.(creation.Watcher)
		if !ok {
			t.Error("the factory context is not a bound.Watcher")
			return nil, errors.New("no watcher")
		}
		b := newBoundTarget()
		if !w.Watch(b) {
			t.Error("no watch in a scope with a safety net")
			return nil, errors.New("no watch")
		}
		got <- b
		select {
		case <-release:
		case <-b.fired:
		case <-time.After(testkit.Bound):
			t.Error("the begin was never released")
		}
		if err := w.Unwatch(); err != nil {
			return nil, err
		}
		return &fakeTx{name: "tx"}, nil
	}
}

// A scope's context ending while the factory runs fires the watched
// begin: it gives up with the context's cause, and nothing is registered.
func TestCreationBoundEndsTheBeginWhenTheScopeContextEnds(t *testing.T) {
	got := make(chan *boundTarget, 1)
	txs := scoped.New(boundFactory(t, got, nil), scoped.WithTeardownErrorHook(nil))
	parent, cancel := context.WithCancelCause(context.Background())
	ctx, scope := scoped.Begin(parent)
	defer scope.Remove()

	errc := make(chan error, 1)
	go func() { _, err := txs.Current(ctx); errc <- err }()
	derived := <-got
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
	if derived.err != context.Canceled {
		t.Errorf("the begin was fired with %v, want context.Canceled", derived.err)
	}
	if txs.Has(ctx) {
		t.Error("a session is registered after the abandoned begin")
	}
	if err := scope.Err(); err != nil {
		t.Errorf("scope.Err = %v: the net ended a scope that held nothing", err)
	}
}

// A begin unwatched without firing is never fired: what was begun
// outlives the scope's context, and the scope's safety net ends it.
func TestCreationBoundNeverEndsAfterSettle(t *testing.T) {
	got := make(chan *boundTarget, 1)
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
	case <-derived.fired:
		t.Error("the begin was fired with the scope's context after it returned")
	default:
	}
	if err := scope.Err(); !errors.Is(err, scoped.ErrScopeCancelled) {
		t.Errorf("scope.Err = %v, want ErrScopeCancelled", err)
	}
}

// Remove while a begin runs gives the begin up: its session would be
// ended the moment it existed.
func TestCreationBoundEndsWhenTheScopeIsRemoved(t *testing.T) {
	got := make(chan *boundTarget, 1)
	txs := scoped.New(boundFactory(t, got, nil), scoped.WithTeardownErrorHook(nil))
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx, scope := scoped.Begin(parent)

	errc := make(chan error, 1)
	go func() { _, err := txs.Current(ctx); errc <- err }()
	b := <-got
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.fired:
	case <-time.After(testkit.Bound):
		t.Fatal("Remove did not fire the begin it cut short")
	}
	if b.err != context.Canceled {
		t.Errorf("the begin was fired with %v, want context.Canceled", b.err)
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

// Where no safety net watches the creation, Watch says so, and the
// adapter must watch the context itself.
func TestCreationBoundOnlyUnderASafetyNet(t *testing.T) {
	offered := func(begin func(context.Context) (context.Context, *scoped.Scope), parent context.Context, opts ...scoped.Option) bool {
		var ok bool
		txs := scoped.New(func(ctx context.Context) (*fakeTx, error) {
			if w, is := ctx.(creation.Watcher); is {
				ok = w.Watch(newBoundTarget())
				_ = w.Unwatch()
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
