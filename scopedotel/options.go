package scopedotel

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// An Option configures [Instrument] and [Hook].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	tp       trace.TracerProvider // nil: otel.GetTracerProvider()
	mp       metric.MeterProvider // nil: otel.GetMeterProvider()
	system   string
	attrs    []attribute.KeyValue
	maxSpans int
}

// DefaultMaxOpenSpans is the default of [WithMaxOpenSpans].
const DefaultMaxOpenSpans = 1 << 16

// WithTracerProvider sets where session spans go. The default is the
// global provider, otel.GetTracerProvider(), read when [Instrument] or
// [Hook] is called (a global provider set later is still used: the global
// one delegates to it).
func WithTracerProvider(tp trace.TracerProvider) Option {
	if tp == nil {
		panic("scopedotel: WithTracerProvider(nil): omit the option for the global provider")
	}
	return optionFunc(func(c *config) { c.tp = tp })
}

// WithMeterProvider sets where session metrics go. The default is the
// global provider, otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	if mp == nil {
		panic("scopedotel: WithMeterProvider(nil): omit the option for the global provider")
	}
	return optionFunc(func(c *config) { c.mp = mp })
}

// WithDBSystem sets the db.system.name attribute of spans and metrics,
// after the OpenTelemetry database conventions: "postgresql", "mysql",
// "mariadb", "sqlite", ... scoped cannot tell it from the session type.
func WithDBSystem(name string) Option {
	return optionFunc(func(c *config) { c.system = name })
}

// WithAttributes adds attributes to every span and every measurement, for
// example attribute.String("db.namespace", "shop"). They are the same for
// every session, so they add no cardinality to the metrics.
func WithAttributes(kv ...attribute.KeyValue) Option {
	kv = append([]attribute.KeyValue(nil), kv...)
	return optionFunc(func(c *config) { c.attrs = append(c.attrs, kv...) })
}

// WithMaxOpenSpans bounds the spans of sessions that have begun and not
// yet ended (default [DefaultMaxOpenSpans]). A session whose end never
// comes, such as one in a scope begun on context.Background() and never
// removed, would otherwise hold its span forever. Past the bound, new
// sessions get no span until others end; their metrics are still
// recorded, and the scoped.session.count gauge keeps showing the leak.
func WithMaxOpenSpans(n int) Option {
	if n <= 0 {
		panic("scopedotel: WithMaxOpenSpans: n must be positive")
	}
	return optionFunc(func(c *config) { c.maxSpans = n })
}
