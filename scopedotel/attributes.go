package scopedotel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-scoped/scoped"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys. db.system.name and error.type are the OpenTelemetry
// semantic conventions' own; the others are scoped's.
const (
	keySystem    = attribute.Key("db.system.name")
	keyErrorType = attribute.Key("error.type")
	keySession   = attribute.Key("scoped.session.name")
	keyNested    = attribute.Key("scoped.session.nested")
	keyOutcome   = attribute.Key("scoped.outcome")
	keyCommit    = attribute.Key("scoped.commit")
	keyRoute     = attribute.Key("scoped.route") // spans only: Event.Route
)

// outcomeCreateFailed is the span outcome of a factory that failed: no
// session was created, so none of the end outcomes applies.
const outcomeCreateFailed = "create_failed"

// labels identifies one combination of attributes a measurement or a span
// carries. Sessions are few and outcomes fewer, so there are few of them.
type labels struct {
	session string
	nested  bool
	outcome string // "" for created and the session count
	errType string // Failed only
}

// measure is what is computed once per labels: the attribute set in the
// shapes the metric API and the span want, so that a session's events
// allocate nothing for their attributes.
type measure struct {
	add      []metric.AddOption
	rec      []metric.RecordOption
	spanName string
	// start holds the span start options that do not change, boxed once.
	start []trace.SpanStartOption
}

// startOptions returns the options to start a span of m at t, with the
// session's route if it has one, so that samplers see it.
func (m *measure) startOptions(t time.Time, route string) []trace.SpanStartOption {
	n := len(m.start) + 1
	if route != "" {
		n++
	}
	o := append(append(make([]trace.SpanStartOption, 0, n), m.start...), trace.WithTimestamp(t))
	if route != "" {
		o = append(o, trace.WithAttributes(keyRoute.String(route)))
	}
	return o
}

// measures caches measure values, copy on write: lookups, on every event,
// take no lock; a new combination of labels is rare.
type measures struct {
	system string
	attrs  []attribute.KeyValue
	m      atomic.Pointer[map[labels]*measure]
	mu     sync.Mutex // serialises writers
}

func (ms *measures) get(l labels) *measure {
	if m := ms.m.Load(); m != nil {
		if v, ok := (*m)[l]; ok {
			return v
		}
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	old := ms.m.Load()
	if old != nil {
		if v, ok := (*old)[l]; ok {
			return v
		}
	}
	v := ms.build(l)
	next := make(map[labels]*measure, 1)
	if old != nil {
		for k, x := range *old {
			next[k] = x
		}
	}
	next[l] = v
	ms.m.Store(&next)
	return v
}

func (ms *measures) build(l labels) *measure {
	kv := append([]attribute.KeyValue(nil), ms.attrs...)
	if ms.system != "" {
		kv = append(kv, keySystem.String(ms.system))
	}
	kv = append(kv, keySession.String(l.session), keyNested.Bool(l.nested))
	if l.outcome != "" {
		kv = append(kv, keyOutcome.String(l.outcome))
	}
	if l.errType != "" {
		kv = append(kv, keyErrorType.String(l.errType))
	}
	set := attribute.NewSet(kv...)
	name := "scoped " + l.session
	if l.nested {
		name = "scoped savepoint " + l.session
	}
	return &measure{
		add:      []metric.AddOption{metric.WithAttributeSet(set)},
		rec:      []metric.RecordOption{metric.WithAttributeSet(set)},
		spanName: name,
		start:    []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(kv...)},
	}
}

// errorType is the error.type of a failed step: the scoped sentinel or
// context error it carries if any, else the Go type of the outermost error
// along its first chain that is not a mere wrapper or string
// (fmt.Errorf's, errors.Join's, errors.New's), else "_OTHER" (the
// conventions' fallback). Either way it has low cardinality, as metrics
// need.
func errorType(err error) string {
	for _, s := range [...]struct {
		err  error
		name string
	}{
		{scoped.ErrCommitUnknown, "commit_unknown"},
		{scoped.ErrTeardownTimeout, "teardown_timeout"},
		{scoped.ErrFactoryPanicked, "panic"},
		{context.DeadlineExceeded, "deadline_exceeded"},
		{context.Canceled, "canceled"},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	for err != nil {
		switch t := fmt.Sprintf("%T", err); t {
		case "*errors.errorString", "*fmt.wrapError", "*fmt.wrapErrors", "*errors.joinError":
		default:
			return t
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			errs := u.Unwrap()
			if len(errs) == 0 {
				return "_OTHER"
			}
			err = errs[0]
		default:
			return "_OTHER"
		}
	}
	return "_OTHER"
}
