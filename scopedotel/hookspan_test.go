package scopedotel_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedotel"
)

// A traced hook's run is a span under the span where it was registered,
// with its outcome; a panicking one is an Error span, and the hooks
// after it still run.
func TestTraceHookShowsInTheUnitsTrace(t *testing.T) {
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil))) // the core reports the panic
	t.Cleanup(func() { slog.SetDefault(prev) })
	tel := newTelemetry(t)
	opt := scopedotel.WithTracerProvider(tel.tp)
	ctx, req := tel.tp.Tracer("test").Start(context.Background(), "POST /orders")
	err := scoped.Run(ctx, func(ctx context.Context) error {
		_ = scoped.OnCommit(ctx, scopedotel.TraceHook("boom", func(context.Context) { panic("boom") }, opt))
		return scoped.OnCommit(ctx, scopedotel.TraceHook("drop cache", func(context.Context) {}, opt))
	})
	req.End()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, outcome string
		status        codes.Code
	}{{"scoped hook boom", "panicked", codes.Error}, {"scoped hook drop cache", "ok", codes.Unset}} {
		got := tel.spansNamed(c.name)
		if len(got) != 1 {
			t.Fatalf("spans %v, want one %q", names(tel.exp.GetSpans()), c.name)
		}
		s := got[0]
		if s.Parent.SpanID() != req.SpanContext().SpanID() {
			t.Errorf("%s: parent %v, want the request's span", c.name, s.Parent.SpanID())
		}
		if s.Status.Code != c.status {
			t.Errorf("%s: status %v, want %v", c.name, s.Status.Code, c.status)
		}
		want := attribute.String("scoped.hook.outcome", c.outcome)
		found := false
		for _, a := range s.Attributes {
			found = found || a == want
		}
		if !found {
			t.Errorf("%s: attributes %v, want %v", c.name, s.Attributes, want)
		}
	}
}
