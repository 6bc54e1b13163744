package scopedotel

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TraceHook wraps fn, a unit hook for [scoped.OnCommit] or
// [scoped.OnRollback], so that its run shows in the unit's trace: a span
// "scoped hook <name>", child of the span current where the hook was
// registered (a hook's context keeps the values of its registration's,
// the span included), with scoped.hook.name and scoped.hook.outcome (ok,
// or panicked: status Error, the panic recorded as an exception, and the
// panic going on to the core, which reports it and runs the next hook).
//
//	scoped.OnCommit(ctx, scopedotel.TraceHook("drop cache", func(ctx context.Context) { cache.Delete(key) }))
//
// Only [WithTracerProvider] and [WithAttributes] apply.
func TraceHook(name string, fn func(ctx context.Context), opts ...Option) func(ctx context.Context) {
	var c config
	for _, o := range opts {
		o.apply(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	tracer := c.tp.Tracer(ScopeName)
	attrs := append([]attribute.KeyValue{attribute.String("scoped.hook.name", name)}, c.attrs...)
	return func(ctx context.Context) {
		ctx, span := tracer.Start(ctx, "scoped hook "+name, trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(attrs...))
		outcome := "panicked"
		defer func() {
			if outcome == "panicked" {
				p := recover()
				if p == nil { // runtime.Goexit: let it go on
					outcome = "exited"
				} else {
					err := fmt.Errorf("scoped hook %s panicked: %v", name, p)
					span.RecordError(err)
					span.SetStatus(codes.Error, err.Error())
					span.SetAttributes(attribute.String("scoped.hook.outcome", outcome))
					span.End()
					panic(p)
				}
			}
			span.SetAttributes(attribute.String("scoped.hook.outcome", outcome))
			span.End()
		}()
		fn(ctx)
		outcome = "ok"
	}
}
