package scoped_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// eventLog collects what an event hook receives.
type eventLog struct {
	mu sync.Mutex
	ev []scoped.Event
}

func (l *eventLog) hook(_ context.Context, e scoped.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ev = append(l.ev, e)
}

func (l *eventLog) kinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var k []string
	for _, e := range l.ev {
		s := e.Kind.String()
		if e.Nested {
			s = "nested " + s
		}
		k = append(k, s)
	}
	return k
}

// The event hook sees every step of every session, with the default
// teardown in place (nothing re-implemented), IDs that pair a session's
// creation with its end, and durations.
func TestEventHookSeesEveryStep(t *testing.T) {
	log := &eventLog{}
	errCommit := errors.New("commit refused")
	fail := false
	txs := scoped.New(func(context.Context) (*nestTx, error) {
		if fail {
			return nil, errors.New("no connection")
		}
		return &nestTx{name: "tx", rec: &testkit.Log{}, kids: new(atomic.Int64)}, nil
	}, scoped.WithEventHook(log.hook), scoped.WithTeardownErrorHook(nil))

	// created, nested created/committed (released), committed
	if err := scoped.Run(context.Background(), func(ctx context.Context) error {
		if _, err := txs.Current(ctx); err != nil {
			return err
		}
		return scoped.Run(ctx, func(ctx context.Context) error { _, err := txs.Current(ctx); return err })
	}); err != nil {
		t.Fatal(err)
	}
	// rolled back
	_ = scoped.Run(context.Background(), func(ctx context.Context) error {
		_, _ = txs.Current(ctx)
		return errors.New("fn failed")
	})
	// failed commit
	_ = scoped.Run(context.Background(), func(ctx context.Context) error {
		tx, _ := txs.Current(ctx)
		tx.commitErr = errCommit
		return nil
	})
	// failed factory
	fail = true
	_ = scoped.Run(context.Background(), func(ctx context.Context) error { _, err := txs.Current(ctx); return err })

	want := []string{"created", "nested created", "nested committed", "committed",
		"created", "rolled_back", "created", "failed", "failed"}
	if got := log.kinds(); !equal(got, want) {
		t.Fatalf("events\n got %v\nwant %v", got, want)
	}
	ev := log.ev
	if ev[0].ID == 0 || ev[0].ID != ev[3].ID || ev[1].ID != ev[2].ID || ev[1].ID == ev[0].ID {
		t.Fatalf("IDs do not pair creations with ends: %+v", ev[:4])
	}
	if !errors.Is(ev[7].Err, errCommit) || !ev[7].Commit || ev[8].ID != 0 || ev[8].Err == nil {
		t.Fatalf("failures: %+v / %+v", ev[7], ev[8])
	}
	for _, e := range ev {
		if e.Duration < 0 || e.Start.IsZero() || e.Session != "*scoped_test.nestTx" {
			t.Fatalf("event %+v lacks its timing or name", e)
		}
	}
	if ev[3].Lifetime < ev[3].Duration {
		t.Fatalf("lifetime %v shorter than the commit %v", ev[3].Lifetime, ev[3].Duration)
	}
}

// A session that only closes reports Closed; a panicking hook stops
// nothing.
func TestEventHookClosedAndPanics(t *testing.T) {
	log := &eventLog{}
	conns := scoped.New(func(context.Context) (*fakeConn, error) { return &fakeConn{name: "c"}, nil },
		scoped.WithEventHook(func(ctx context.Context, e scoped.Event) {
			log.hook(ctx, e)
			panic(fmt.Sprint("hook panics on ", e.Kind))
		}))
	ctx, scope := scoped.Begin(context.Background())
	c := mustCurrent(t, conns, ctx)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := log.kinds(); !equal(got, []string{"created", "closed"}) || c.closes.Load() != 1 {
		t.Fatalf("events %v, closes %d", got, c.closes.Load())
	}
}

// A factory that says where its session runs (ReportRoute) has every
// event of that session carry it, read when the event is reported, so a
// session that picks its server after creation reports where it ended up;
// a savepoint runs where its transaction does. Outside a factory
// ReportRoute does nothing.
func TestEventsCarryTheRouteTheFactoryReports(t *testing.T) {
	log := &eventLog{}
	var route atomic.Value
	route.Store("replica 1")
	txs := scoped.New(func(ctx context.Context) (*nestTx, error) {
		scoped.ReportRoute(ctx, func() string { return route.Load().(string) })
		return &nestTx{name: "tx", rec: &testkit.Log{}, kids: new(atomic.Int64)}, nil
	}, scoped.WithEventHook(log.hook))
	scoped.ReportRoute(context.Background(), func() string { panic("called outside a factory") })

	if err := scoped.Run(context.Background(), func(ctx context.Context) error {
		if _, err := txs.Current(ctx); err != nil {
			return err
		}
		route.Store("primary (replica 1 lags)")
		return scoped.Run(ctx, func(ctx context.Context) error { _, err := txs.Current(ctx); return err })
	}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range log.ev {
		got = append(got, e.Kind.String()+": "+e.Route)
	}
	want := []string{"created: replica 1", "created: primary (replica 1 lags)",
		"committed: primary (replica 1 lags)", "committed: primary (replica 1 lags)"}
	if !equal(got, want) {
		t.Fatalf("routes\n got %v\nwant %v", got, want)
	}

	plain := scoped.New(func(ctx context.Context) (*nestTx, error) {
		return &nestTx{name: "tx", rec: &testkit.Log{}, kids: new(atomic.Int64)}, nil
	}, scoped.WithEventHook(log.hook))
	log.ev = nil
	_ = scoped.Run(context.Background(), func(ctx context.Context) error { _, err := plain.Current(ctx); return err })
	for _, e := range log.ev {
		if e.Route != "" {
			t.Fatalf("a factory that reports no route: event %+v", e)
		}
	}
}
