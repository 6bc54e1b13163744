package scopedotel_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedotel"
)

// The session's span is a child of the span in the scope's context (the
// request's), starts when the factory is called, ends when the session
// has ended, and carries the database convention's attributes.
func TestSessionSpanIsChildOfRequestSpan(t *testing.T) {
	tel := newTelemetry(t)
	db := &fakeDB{}
	users := tel.sessions(db, "users", scopedotel.WithDBSystem("postgresql"),
		scopedotel.WithAttributes(attribute.String("db.namespace", "shop")))

	ctx, req := tel.tp.Tracer("test").Start(context.Background(), "GET /users")
	ctx, scope := scoped.Begin(ctx)
	if _, err := users.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(tel.exp.GetSpans()); got != 0 {
		t.Fatalf("%d span(s) ended while the session is open", got)
	}
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	req.End()

	got := tel.spansNamed("scoped users")
	if len(got) != 1 {
		t.Fatalf("spans %v, want one \"scoped users\"", names(tel.exp.GetSpans()))
	}
	s := got[0]
	if s.Parent.SpanID() != req.SpanContext().SpanID() || s.SpanContext.TraceID() != req.SpanContext().TraceID() {
		t.Errorf("session span's parent %v in trace %v, want the request span %v in %v",
			s.Parent.SpanID(), s.SpanContext.TraceID(), req.SpanContext().SpanID(), req.SpanContext().TraceID())
	}
	if s.SpanKind != trace.SpanKindInternal {
		t.Errorf("kind %v, want internal", s.SpanKind)
	}
	if s.Status.Code != codes.Unset {
		t.Errorf("status %v %q, want unset", s.Status.Code, s.Status.Description)
	}
	if !s.StartTime.Before(s.EndTime) {
		t.Errorf("span from %v to %v", s.StartTime, s.EndTime)
	}
	if s.InstrumentationLibrary.Name != scopedotel.ScopeName {
		t.Errorf("instrumentation scope %q, want %q", s.InstrumentationLibrary.Name, scopedotel.ScopeName)
	}
	wantAttr(t, s, "db.system.name", attribute.StringValue("postgresql"))
	wantAttr(t, s, "db.namespace", attribute.StringValue("shop"))
	wantAttr(t, s, "scoped.session.name", attribute.StringValue("users"))
	wantAttr(t, s, "scoped.session.nested", attribute.BoolValue(false))
	wantAttr(t, s, "scoped.outcome", attribute.StringValue("committed"))
	wantAttr(t, s, "scoped.commit", attribute.BoolValue(true))
	if _, ok := attr(s, "error.type"); ok {
		t.Error("error.type on a committed session")
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// Each way a session ends shows in its span: outcome, commit asked, and
// for a failure the status Error, the error and its type.
func TestSpanOutcomes(t *testing.T) {
	errRollback := errors.New("fake: connection lost")
	cases := []struct {
		name        string
		commit      bool
		commitErr   error
		rollbackErr error
		outcome     string
		failed      string // the status description must contain it
	}{
		{name: "committed", commit: true, outcome: "committed"},
		{name: "rolled back", outcome: "rolled_back"},
		{name: "commit failed", commit: true, commitErr: errRefused, outcome: "failed", failed: errRefused.Error()},
		{name: "rollback failed", rollbackErr: errRollback, outcome: "failed", failed: errRollback.Error()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tel := newTelemetry(t)
			users := tel.sessions(&fakeDB{commitErr: tc.commitErr, rollbackErr: tc.rollbackErr}, "users")
			ctx, scope := scoped.Begin(context.Background())
			if _, err := users.Current(ctx); err != nil {
				t.Fatal(err)
			}
			end := scope.Remove
			if tc.commit {
				end = scope.Commit
			}
			err := end()
			if (err != nil) != (tc.failed != "") {
				t.Fatalf("ending the scope: %v", err)
			}
			spans := tel.spansNamed("scoped users")
			if len(spans) != 1 {
				t.Fatalf("spans %v, want one \"scoped users\"", names(tel.exp.GetSpans()))
			}
			s := spans[0]
			wantAttr(t, s, "scoped.outcome", attribute.StringValue(tc.outcome))
			wantAttr(t, s, "scoped.commit", attribute.BoolValue(tc.commit))
			if tc.failed == "" {
				if s.Status.Code != codes.Unset || len(s.Events) != 0 {
					t.Errorf("status %v, events %v; want unset, none", s.Status.Code, s.Events)
				}
				return
			}
			if s.Status.Code != codes.Error || !strings.Contains(s.Status.Description, tc.failed) {
				t.Errorf("status %v %q, want Error containing %q", s.Status.Code, s.Status.Description, tc.failed)
			}
			wantAttr(t, s, "error.type", attribute.StringValue("_OTHER"))
			if len(s.Events) != 1 || s.Events[0].Name != "exception" {
				t.Errorf("events %v, want one exception", s.Events)
			}
		})
	}
}

// A session type with nothing to commit or roll back ends Closed.
func TestSpanClosedSession(t *testing.T) {
	tel := newTelemetry(t)
	conns := scoped.New(func(context.Context) (*closer, error) { return &closer{}, nil },
		scoped.WithName("conn"), tel.instrument())
	ctx, scope := scoped.Begin(context.Background())
	if _, err := conns.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	spans := tel.spansNamed("scoped conn")
	if len(spans) != 1 {
		t.Fatalf("spans %v, want one \"scoped conn\"", names(tel.exp.GetSpans()))
	}
	wantAttr(t, spans[0], "scoped.outcome", attribute.StringValue("closed"))
}

type closer struct{}

func (*closer) Close() error { return nil }

// A factory that fails gets a short span with status Error, a child of the
// request's span, and no session span is left open.
func TestSpanFactoryFailure(t *testing.T) {
	tel := newTelemetry(t)
	noConn := errors.New("fake: pool exhausted")
	users := tel.sessions(&fakeDB{factoryErr: noConn}, "users")
	ctx, req := tel.tp.Tracer("test").Start(context.Background(), "request")
	ctx, scope := scoped.Begin(ctx)
	if _, err := users.Current(ctx); !errors.Is(err, noConn) {
		t.Fatalf("Current: %v, want %v", err, noConn)
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	req.End()
	spans := tel.spansNamed("scoped users")
	if len(spans) != 1 {
		t.Fatalf("spans %v, want one \"scoped users\"", names(tel.exp.GetSpans()))
	}
	s := spans[0]
	if s.Parent.SpanID() != req.SpanContext().SpanID() {
		t.Error("factory failure span is not a child of the request span")
	}
	wantAttr(t, s, "scoped.outcome", attribute.StringValue("create_failed"))
	if s.Status.Code != codes.Error || !strings.Contains(s.Status.Description, noConn.Error()) {
		t.Errorf("status %v %q, want Error with %q", s.Status.Code, s.Status.Description, noConn)
	}
}

// scoped.Run inside scoped.Run nests: the inner unit of work is a
// savepoint of the outer transaction, with a span of its own, a child of
// the span current where the inner Run began; a failing inner unit rolls
// back only its savepoint.
func TestNestedSavepointSpans(t *testing.T) {
	tel := newTelemetry(t)
	users := tel.sessions(&fakeDB{}, "users")
	tracer := tel.tp.Tracer("test")
	errInner := errors.New("inner failed")

	ctx, req := tracer.Start(context.Background(), "request")
	var service trace.SpanContext
	err := scoped.Run(ctx, func(ctx context.Context) error {
		outer, err := users.Current(ctx)
		if err != nil {
			return err
		}
		ctx, sp := tracer.Start(ctx, "service")
		defer sp.End()
		service = sp.SpanContext()
		if err := scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := users.Current(ctx)
			if err != nil {
				return err
			}
			if tx.parent != outer {
				t.Error("inner unit of work is not nested in the outer transaction")
			}
			return nil
		}); err != nil {
			return err
		}
		if err := scoped.Run(ctx, func(ctx context.Context) error {
			if _, err := users.Current(ctx); err != nil {
				return err
			}
			return errInner
		}); !errors.Is(err, errInner) {
			t.Errorf("failing inner Run: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	req.End()

	nested := tel.spansNamed("scoped savepoint users")
	if len(nested) != 2 {
		t.Fatalf("spans %v, want two \"scoped savepoint users\"", names(tel.exp.GetSpans()))
	}
	for i, want := range []string{"committed", "rolled_back"} {
		s := nested[i]
		wantAttr(t, s, "scoped.session.nested", attribute.BoolValue(true))
		wantAttr(t, s, "scoped.outcome", attribute.StringValue(want))
		if s.Parent.SpanID() != service.SpanID() {
			t.Errorf("savepoint %d: parent %v, want the service span %v", i, s.Parent.SpanID(), service.SpanID())
		}
	}
	outer := tel.spansNamed("scoped users")
	if len(outer) != 1 {
		t.Fatalf("spans %v, want one \"scoped users\"", names(tel.exp.GetSpans()))
	}
	wantAttr(t, outer[0], "scoped.outcome", attribute.StringValue("committed"))
	wantAttr(t, outer[0], "scoped.session.nested", attribute.BoolValue(false))
	if outer[0].Parent.SpanID() != req.SpanContext().SpanID() {
		t.Error("outer session span is not a child of the request span")
	}
	if outer[0].EndTime.Before(nested[1].EndTime) {
		t.Error("outer session ended before its savepoints")
	}
}

// Sessions whose end never comes hold at most WithMaxOpenSpans spans;
// past the bound new sessions get none, and once sessions end there is
// room again. Metrics still count every session.
func TestMaxOpenSpans(t *testing.T) {
	tel := newTelemetry(t)
	users := tel.sessions(&fakeDB{}, "users", scopedotel.WithMaxOpenSpans(2))
	var scopes []*scoped.Scope
	for range 3 {
		ctx, scope := scoped.Begin(context.Background())
		if _, err := users.Current(ctx); err != nil {
			t.Fatal(err)
		}
		scopes = append(scopes, scope)
	}
	for _, s := range scopes {
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(tel.spansNamed("scoped users")); got != 2 {
		t.Errorf("%d spans for 3 sessions open at once with room for 2, want 2", got)
	}
	ctx, scope := scoped.Begin(context.Background())
	if _, err := users.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := len(tel.spansNamed("scoped users")); got != 3 {
		t.Errorf("%d spans after the open sessions ended and one more ran, want 3", got)
	}
	rm := tel.collect(t)
	if got := sum(t, rm, "scoped.session.ended", attribute.String("scoped.outcome", "committed")); got != 4 {
		t.Errorf("ended committed = %d, want 4", got)
	}
}

// Unsampled sessions are not held: they take no room under the bound.
func TestUnsampledSpansNotHeld(t *testing.T) {
	tel := newTelemetry(t, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	users := tel.sessions(&fakeDB{}, "users", scopedotel.WithMaxOpenSpans(1))
	unsampled := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}}))
	ctxA, a := scoped.Begin(unsampled)
	if _, err := users.Current(ctxA); err != nil {
		t.Fatal(err)
	}
	ctxB, b := scoped.Begin(context.Background())
	if _, err := users.Current(ctxB); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	spans := tel.spansNamed("scoped users")
	if len(spans) != 1 || spans[0].SpanContext.TraceID() == (trace.TraceID{1}) {
		t.Errorf("spans %v, want only the sampled session's", spans)
	}
}

func TestOptionsMisusePanics(t *testing.T) {
	for name, f := range map[string]func(){
		"WithTracerProvider(nil)": func() { scopedotel.WithTracerProvider(nil) },
		"WithMeterProvider(nil)":  func() { scopedotel.WithMeterProvider(nil) },
		"WithMaxOpenSpans(0)":     func() { scopedotel.WithMaxOpenSpans(0) },
	} {
		func() {
			defer func() {
				p := recover()
				if s, _ := p.(string); !strings.HasPrefix(s, "scopedotel: ") {
					t.Errorf("%s: panic %v, want one starting with \"scopedotel: \"", name, p)
				}
			}()
			f()
		}()
	}
}
