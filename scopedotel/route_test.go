package scopedotel_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/go-scoped/scoped"
)

// startRoutes records the scoped.route each span started with, as a
// sampler or a span processor sees it.
type startRoutes struct {
	mu     sync.Mutex
	routes []string
}

func (p *startRoutes) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	route := "(none)"
	for _, kv := range s.Attributes() {
		if kv.Key == "scoped.route" {
			route = kv.Value.AsString()
		}
	}
	p.routes = append(p.routes, route)
}
func (*startRoutes) OnEnd(sdktrace.ReadOnlySpan)      {}
func (*startRoutes) Shutdown(context.Context) error   { return nil }
func (*startRoutes) ForceFlush(context.Context) error { return nil }

// A session whose factory says where it runs (scoped.ReportRoute, as
// scopedpgx does with replicas) carries it as scoped.route: from its start,
// and at its end where it ended up, which may differ (scopedpgx sends
// BEGIN with the first statement, and may move the unit then). Its
// savepoints run where it does. A factory that fails after reporting has
// it on its create_failed span; one that reports nothing gets none.
func TestSpanRoute(t *testing.T) {
	started := &startRoutes{}
	tel := newTelemetry(t, sdktrace.WithSpanProcessor(started))
	var route atomic.Value
	db := &fakeDB{}
	users := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		scoped.ReportRoute(ctx, func() string { return route.Load().(string) })
		return db.begin(ctx)
	}, scoped.WithName("users"), tel.instrument())

	route.Store("replica 1")
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		if _, err := users.Current(ctx); err != nil {
			return err
		}
		route.Store("primary (replica 1 has not replayed the position)")
		return scoped.Run(ctx, func(ctx context.Context) error { _, err := users.Current(ctx); return err })
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"replica 1", "primary (replica 1 has not replayed the position)"}; !slices.Equal(started.routes, want) {
		t.Errorf("routes at the spans' start %q, want %q", started.routes, want)
	}
	for _, name := range []string{"scoped users", "scoped savepoint users"} {
		spans := tel.spansNamed(name)
		if len(spans) != 1 {
			t.Fatalf("spans %v, want one %q", names(tel.exp.GetSpans()), name)
		}
		wantAttr(t, spans[0], "scoped.route", attribute.StringValue("primary (replica 1 has not replayed the position)"))
	}

	tel.exp.Reset()
	db.factoryErr = errors.New("fake: primary down too")
	route.Store("primary (replica 1 down)")
	if err := scoped.Run(context.Background(), func(ctx context.Context) error { _, err := users.Current(ctx); return err }); !errors.Is(err, db.factoryErr) {
		t.Fatalf("Run: %v, want %v", err, db.factoryErr)
	}
	spans := tel.spansNamed("scoped users")
	if len(spans) != 1 {
		t.Fatalf("spans %v, want one \"scoped users\"", names(tel.exp.GetSpans()))
	}
	wantAttr(t, spans[0], "scoped.outcome", attribute.StringValue("create_failed"))
	wantAttr(t, spans[0], "scoped.route", attribute.StringValue("primary (replica 1 down)"))

	tel.exp.Reset()
	plain := tel.sessions(&fakeDB{}, "plain")
	if err := scoped.Run(context.Background(), func(ctx context.Context) error { _, err := plain.Current(ctx); return err }); err != nil {
		t.Fatal(err)
	}
	for _, s := range tel.exp.GetSpans() {
		if v, ok := attr(s, "scoped.route"); ok {
			t.Errorf("span %q of a factory that reports no route: scoped.route %q", s.Name, v.AsString())
		}
	}
}
