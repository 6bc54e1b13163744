package scopedotel

import (
	"context"

	"github.com/go-scoped/scoped"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/go-scoped/scoped/scopedotel"

// Instrument returns an option for [scoped.New] that traces and measures
// the ScopedSession's sessions:
//
//	users := scoped.New(scopedsql.Tx(db, nil), scopedotel.Instrument(scopedotel.WithDBSystem("postgresql")))
//
// It is [scoped.WithEventHook] with [Hook]: a ScopedSession has one event
// hook, so to run a hook of your own as well, call Hook and both from one
// function.
func Instrument(opts ...Option) scoped.Option {
	return scoped.WithEventHook(Hook(opts...))
}

// Hook returns an event hook for [scoped.WithEventHook] that traces and
// measures sessions. One hook may serve several ScopedSessions; their
// sessions are told apart by the scoped.session.name attribute.
func Hook(opts ...Option) func(context.Context, scoped.Event) {
	c := config{maxSpans: DefaultMaxOpenSpans}
	for _, o := range opts {
		o.apply(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	h := &hook{
		tracer: c.tp.Tracer(ScopeName),
		spans:  newOpenSpans(c.maxSpans),
		ms:     measures{system: c.system, attrs: c.attrs},
	}
	h.instruments(c.mp.Meter(ScopeName))
	return h.event
}

type hook struct {
	tracer trace.Tracer
	spans  *openSpans
	ms     measures

	created        metric.Int64Counter
	ended          metric.Int64Counter
	createFailures metric.Int64Counter
	count          metric.Int64UpDownCounter
	commit         metric.Float64Histogram
}

func (h *hook) event(ctx context.Context, e scoped.Event) {
	switch {
	case e.Kind == scoped.Created:
		h.begin(ctx, e)
	case e.ID == 0:
		h.createFailed(ctx, e)
	default:
		h.end(ctx, e)
	}
}

// begin starts the session's span, a child of the span in ctx (the
// scope's context: the request's span under otelhttp), at the time the
// factory was called.
func (h *hook) begin(ctx context.Context, e scoped.Event) {
	m := h.ms.get(labels{session: e.Session, nested: e.Nested})
	h.created.Add(ctx, 1, m.add...)
	h.count.Add(ctx, 1, m.add...)
	if !h.spans.reserve() {
		return
	}
	kept := false
	defer func() {
		if !kept {
			// Not sampled (ending it would do nothing), or a sampler or span
			// processor panicked: give the room back.
			h.spans.release()
		}
	}()
	_, span := h.tracer.Start(ctx, m.spanName, m.startOptions(e.Start, e.Route)...)
	if !span.IsRecording() {
		return
	}
	h.spans.put(e.ID, span)
	kept = true
}

// end records the end of a session and ends its span.
func (h *hook) end(ctx context.Context, e scoped.Event) {
	base := h.ms.get(labels{session: e.Session, nested: e.Nested})
	h.count.Add(ctx, -1, base.add...)
	l := labels{session: e.Session, nested: e.Nested, outcome: e.Kind.String()}
	if e.Kind == scoped.Failed {
		l.errType = errorType(e.Err)
	}
	m := h.ms.get(l)
	h.ended.Add(ctx, 1, m.add...)
	if e.Commit {
		h.commit.Record(ctx, e.Duration.Seconds(), m.rec...)
	}
	span, ok := h.spans.take(e.ID)
	if !ok {
		return
	}
	span.SetAttributes(keyOutcome.String(l.outcome), keyCommit.Bool(e.Commit))
	if e.Route != "" { // where the session ended up: it may have moved since its creation
		span.SetAttributes(keyRoute.String(e.Route))
	}
	end := e.Start.Add(e.Duration)
	if e.Kind == scoped.Failed {
		span.SetAttributes(keyErrorType.String(l.errType))
		span.RecordError(e.Err, trace.WithTimestamp(end))
		span.SetStatus(codes.Error, e.Err.Error())
	}
	span.End(trace.WithTimestamp(end))
}

// createFailed reports a factory that failed or panicked: a span as long
// as the factory took, so that a BEGIN that waited for the pool shows how
// long it waited, and the scoped.session.create_failures counter.
func (h *hook) createFailed(ctx context.Context, e scoped.Event) {
	et := errorType(e.Err)
	m := h.ms.get(labels{session: e.Session, nested: e.Nested, errType: et}) // Nested: a savepoint that failed to begin
	h.createFailures.Add(ctx, 1, m.add...)
	_, span := h.tracer.Start(ctx, m.spanName, m.startOptions(e.Start, e.Route)...)
	if !span.IsRecording() {
		return
	}
	end := e.Start.Add(e.Duration)
	span.SetAttributes(keyOutcome.String(outcomeCreateFailed))
	span.RecordError(e.Err, trace.WithTimestamp(end))
	span.SetStatus(codes.Error, e.Err.Error())
	span.End(trace.WithTimestamp(end))
}

// instruments creates the metric instruments. A meter that reports an
// error (it should not: the names are valid) reaches otel.Handle, and a
// missing instrument records nothing, rather than failing the
// ScopedSession.
func (h *hook) instruments(m metric.Meter) {
	nm := noop.NewMeterProvider().Meter(ScopeName)
	var errs [5]error
	h.created, errs[0] = m.Int64Counter("scoped.session.created", metric.WithUnit("{session}"),
		metric.WithDescription("Sessions created: by their factory, or nested in an ancestor's (scoped.session.nested)"))
	h.ended, errs[1] = m.Int64Counter("scoped.session.ended", metric.WithUnit("{session}"),
		metric.WithDescription("Sessions ended, by scoped.outcome: committed, rolled_back, closed, failed"))
	h.createFailures, errs[2] = m.Int64Counter("scoped.session.create_failures", metric.WithUnit("{session}"),
		metric.WithDescription("Factory calls that failed or panicked, and savepoints that failed to begin (scoped.session.nested): no session was created"))
	h.count, errs[3] = m.Int64UpDownCounter("scoped.session.count", metric.WithUnit("{session}"),
		metric.WithDescription("Sessions created and not yet ended"))
	h.commit, errs[4] = m.Float64Histogram("scoped.session.commit.duration", metric.WithUnit("s"),
		metric.WithDescription("How long ending a session by a commit took (commit and close), by scoped.outcome: committed or failed"),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10))
	for _, err := range errs {
		if err != nil {
			otel.Handle(err)
		}
	}
	if h.created == nil {
		h.created, _ = nm.Int64Counter("scoped.session.created")
	}
	if h.ended == nil {
		h.ended, _ = nm.Int64Counter("scoped.session.ended")
	}
	if h.createFailures == nil {
		h.createFailures, _ = nm.Int64Counter("scoped.session.create_failures")
	}
	if h.count == nil {
		h.count, _ = nm.Int64UpDownCounter("scoped.session.count")
	}
	if h.commit == nil {
		h.commit, _ = nm.Float64Histogram("scoped.session.commit.duration")
	}
}
