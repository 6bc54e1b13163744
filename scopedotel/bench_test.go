package scopedotel_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedotel"
)

// nopTx is a session that does nothing, so that what is measured is the
// scope, the session's bookkeeping and the instrumentation.
type nopTx struct{}

func (*nopTx) Commit(context.Context) error   { return nil }
func (*nopTx) Rollback(context.Context) error { return nil }

// BenchmarkSession is one unit of work (Begin, Current, Commit) without
// instrumentation, with an event hook that does nothing (the core's share),
// with scopedotel on the global no-op providers (OTel not
// configured), and with scopedotel on the SDK (every span sampled and
// exported synchronously to a discarding exporter, metrics aggregated for
// a manual reader). Interleave the variants by running them one at a time in turn
// (see BENCHMARKS.md): -count repeats each before the next.
func BenchmarkSession(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	newTx := func(context.Context) (*nopTx, error) { return &nopTx{}, nil }
	variants := []struct {
		name string
		r    *scoped.ScopedSession[*nopTx]
	}{
		{"plain", scoped.New(newTx, scoped.WithName("db"))},
		{"empty-hook", scoped.New(newTx, scoped.WithName("db"), scoped.WithEventHook(func(context.Context, scoped.Event) {}))},
		{"otel-noop", scoped.New(newTx, scoped.WithName("db"), scopedotel.Instrument())},
		{"otel-sdk", scoped.New(newTx, scoped.WithName("db"),
			scopedotel.Instrument(scopedotel.WithTracerProvider(tp), scopedotel.WithMeterProvider(mp)))},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				ctx, scope := scoped.Begin(context.Background())
				if _, err := v.r.Current(ctx); err != nil {
					b.Fatal(err)
				}
				if err := scope.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
