package scopedotel_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedotel"
)

// Without provider options, the global providers are used, including
// ones set after Instrument was called (the global ones delegate).
func TestDefaultsToGlobalProviders(t *testing.T) {
	users := scoped.New((&fakeDB{}).begin, scoped.WithName("global"), scopedotel.Instrument())
	tel := newTelemetry(t)
	otel.SetTracerProvider(tel.tp)
	otel.SetMeterProvider(tel.mp)
	ctx, scope := scoped.Begin(context.Background())
	if _, err := users.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := len(tel.spansNamed("scoped global")); got != 1 {
		t.Errorf("%d spans on the global provider, want 1", got)
	}
	rm := tel.collect(t)
	if got := sum(t, rm, "scoped.session.ended", attribute.String("scoped.session.name", "global")); got != 1 {
		t.Errorf("ended on the global meter provider = %d, want 1", got)
	}
}

// timedTx records when its factory ran and when its commit ran.
type timedTx struct{ committed time.Time }

func (t *timedTx) Commit(context.Context) error   { t.committed = time.Now(); return nil }
func (t *timedTx) Rollback(context.Context) error { return nil }

// The span covers the session: it starts before the factory ran (at the
// factory call) and ends after the commit ran, within the caller's
// Current and Commit.
func TestSpanCoversTheSession(t *testing.T) {
	tel := newTelemetry(t)
	var created time.Time
	var tx *timedTx
	txs := scoped.New(func(context.Context) (*timedTx, error) {
		created = time.Now()
		tx = &timedTx{}
		return tx, nil
	}, scoped.WithName("timed"), tel.instrument())
	before := time.Now()
	ctx, scope := scoped.Begin(context.Background())
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	spans := tel.spansNamed("scoped timed")
	if len(spans) != 1 {
		t.Fatalf("spans %v", names(tel.exp.GetSpans()))
	}
	s := spans[0]
	if s.StartTime.Before(before) || s.StartTime.After(created) {
		t.Errorf("span starts at %v, want between %v and the factory's %v", s.StartTime, before, created)
	}
	if s.EndTime.Before(tx.committed) || s.EndTime.After(after) {
		t.Errorf("span ends at %v, want between the commit's %v and %v", s.EndTime, tx.committed, after)
	}
}
