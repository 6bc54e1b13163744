package scopedotel_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedotel"
	"github.com/go-scoped/scoped/scopedtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(scopedtest.CheckScopesM(m))
}

// fakeDB stands for a database: its transactions (fakeTx) nest, as
// pgx.Tx's do, with Begin(ctx) on a transaction. Set the errors before
// the sessions run.
type fakeDB struct {
	commitErr, rollbackErr error
	factoryErr             error
}

type fakeTx struct {
	db     *fakeDB
	parent *fakeTx
}

func (db *fakeDB) begin(context.Context) (*fakeTx, error) {
	if db.factoryErr != nil {
		return nil, db.factoryErr
	}
	return &fakeTx{db: db}, nil
}

func (t *fakeTx) Begin(context.Context) (*fakeTx, error) { return &fakeTx{db: t.db, parent: t}, nil }
func (t *fakeTx) Commit(context.Context) error           { return t.db.commitErr }
func (t *fakeTx) Rollback(context.Context) error         { return t.db.rollbackErr }

// telemetry is an SDK tracer provider exporting to memory, synchronously
// (a span is exported when it ends), and a meter provider read by hand.
type telemetry struct {
	exp    *tracetest.InMemoryExporter
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newTelemetry(t *testing.T, opts ...sdktrace.TracerProviderOption) *telemetry {
	t.Helper()
	tel := &telemetry{exp: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{sdktrace.WithSyncer(tel.exp)}, opts...)...)
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		_ = tel.tp.Shutdown(context.Background())
		_ = tel.mp.Shutdown(context.Background())
	})
	return tel
}

// instrument is scopedotel.Instrument sending to tel.
func (tel *telemetry) instrument(opts ...scopedotel.Option) scoped.Option {
	return scopedotel.Instrument(append([]scopedotel.Option{
		scopedotel.WithTracerProvider(tel.tp), scopedotel.WithMeterProvider(tel.mp)}, opts...)...)
}

// sessions returns a ScopedSession of db's transactions named name,
// instrumented with tel, teardown errors silenced (tests look at them in
// the spans).
func (tel *telemetry) sessions(db *fakeDB, name string, opts ...scopedotel.Option) *scoped.ScopedSession[*fakeTx] {
	return scoped.New(db.begin, scoped.WithName(name), scoped.WithTeardownErrorHook(nil), tel.instrument(opts...))
}

// spansNamed returns the ended spans called name, in the order they ended.
func (tel *telemetry) spansNamed(name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range tel.exp.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func (tel *telemetry) collect(t *testing.T) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	return rm
}

func find(rm metricdata.ResourceMetrics, name string) (metricdata.Metrics, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

// has reports whether set holds every one of kv.
func has(set attribute.Set, kv []attribute.KeyValue) bool {
	for _, want := range kv {
		if got, ok := set.Value(want.Key); !ok || got != want.Value {
			return false
		}
	}
	return true
}

// sum adds up the data points of the int64 sum called name whose
// attributes include kv.
func sum(t *testing.T, rm metricdata.ResourceMetrics, name string, kv ...attribute.KeyValue) int64 {
	t.Helper()
	m, ok := find(rm, name)
	if !ok {
		return 0
	}
	data, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is a %T, want an int64 sum", name, m.Data)
	}
	var n int64
	for _, dp := range data.DataPoints {
		if has(dp.Attributes, kv) {
			n += dp.Value
		}
	}
	return n
}

// histogram returns the count and sum of the observations of the float64
// histogram called name whose attributes include kv.
func histogram(t *testing.T, rm metricdata.ResourceMetrics, name string, kv ...attribute.KeyValue) (count uint64, total float64, bounds []float64) {
	t.Helper()
	m, ok := find(rm, name)
	if !ok {
		return 0, 0, nil
	}
	data, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s is a %T, want a float64 histogram", name, m.Data)
	}
	for _, dp := range data.DataPoints {
		if has(dp.Attributes, kv) {
			count += dp.Count
			total += dp.Sum
			bounds = dp.Bounds
		}
	}
	return count, total, bounds
}

// attr returns the value of the span attribute key, and whether it is set.
func attr(s tracetest.SpanStub, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// wantAttr fails the test unless span s has key set to want.
func wantAttr(t *testing.T, s tracetest.SpanStub, key attribute.Key, want attribute.Value) {
	t.Helper()
	got, ok := attr(s, key)
	if !ok {
		t.Errorf("span %q: no %s attribute, want %v", s.Name, key, want.Emit())
		return
	}
	if got != want {
		t.Errorf("span %q: %s = %v, want %v", s.Name, key, got.Emit(), want.Emit())
	}
}

var errRefused = errors.New("fake: commit refused")
