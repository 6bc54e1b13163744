package scopedotel_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedotel"
)

// error.type has low cardinality: scoped's sentinels and context errors
// by name, typed errors by their Go type, plain error strings as _OTHER.
func TestErrorType(t *testing.T) {
	tel := newTelemetry(t)
	opErr := &net.OpError{Op: "read", Err: errors.New("reset")}
	cases := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("scoped: commit db session: %w", errors.New("boom")), "_OTHER"},
		{fmt.Errorf("scoped: commit db session: %w", opErr), "*net.OpError"},
		{errors.Join(fmt.Errorf("x: %w", opErr), errors.New("close")), "*net.OpError"},
		{fmt.Errorf("a: %w: %w", scoped.ErrTeardownTimeout, scoped.ErrCommitUnknown), "commit_unknown"},
		{fmt.Errorf("end: %w", scoped.ErrTeardownTimeout), "teardown_timeout"},
		{fmt.Errorf("commit: %w", context.DeadlineExceeded), "deadline_exceeded"},
		{fmt.Errorf("commit: %w", context.Canceled), "canceled"},
	}
	for i, tc := range cases {
		db := &fakeDB{commitErr: tc.err}
		users := tel.sessions(db, fmt.Sprintf("case%d", i))
		ctx, scope := scoped.Begin(context.Background())
		if _, err := users.Current(ctx); err != nil {
			t.Fatal(err)
		}
		_ = scope.Commit()
		spans := tel.spansNamed(fmt.Sprintf("scoped case%d", i))
		if len(spans) != 1 {
			t.Fatalf("case %d: %d spans", i, len(spans))
		}
		wantAttr(t, spans[0], "error.type", attribute.StringValue(tc.want))
	}
}

// Hook serves several ScopedSessions and composes with a hook of the
// user's own in one function; WithAttributes reaches the metrics too.
func TestHookComposes(t *testing.T) {
	tel := newTelemetry(t)
	otelHook := scopedotel.Hook(scopedotel.WithTracerProvider(tel.tp), scopedotel.WithMeterProvider(tel.mp),
		scopedotel.WithAttributes(attribute.String("service.area", "billing")))
	var mine []string
	hook := scoped.WithEventHook(func(ctx context.Context, e scoped.Event) {
		otelHook(ctx, e)
		mine = append(mine, e.Session+" "+e.Kind.String())
	})
	a := scoped.New((&fakeDB{}).begin, scoped.WithName("a"), hook)
	b := scoped.New((&fakeDB{}).begin, scoped.WithName("b"), hook)
	ctx, scope := scoped.Begin(context.Background())
	for _, r := range []*scoped.ScopedSession[*fakeTx]{a, b} {
		if _, err := r.Current(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	if len(mine) != 4 {
		t.Errorf("own hook saw %q, want 4 events", mine)
	}
	if len(tel.spansNamed("scoped a")) != 1 || len(tel.spansNamed("scoped b")) != 1 {
		t.Errorf("spans %v, want one per ScopedSession", names(tel.exp.GetSpans()))
	}
	rm := tel.collect(t)
	area := attribute.String("service.area", "billing")
	for _, name := range []string{"a", "b"} {
		if got := sum(t, rm, "scoped.session.created", area, attribute.String("scoped.session.name", name)); got != 1 {
			t.Errorf("created %s with service.area = %d, want 1", name, got)
		}
	}
}
