package scopedotel_test

// Review 7 of scopedotel: span parentage, the open-span bound under every
// way a session ends (or never does), metrics against Stats after a mixed
// workload, and attributes of failures and routes.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedotel"
)

// quietSlog silences the core's reports (panicking teardowns and hooks)
// for the rest of t.
func quietSlog(t *testing.T) {
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
}

// The session's span is a child of the span of the scope's context (the
// request's) even when the first Current runs under a span of the
// handler's own; a session under a custom key is a child of the span of
// the Current that created it; a session the safety net ends keeps its
// parent and is ended.
func TestReview7SessionSpanParents(t *testing.T) {
	tel := newTelemetry(t)
	tracer := tel.tp.Tracer("test")
	users := tel.sessions(&fakeDB{}, "users")

	// First Current under a child span of the request's.
	rctx, req := tracer.Start(context.Background(), "GET /users")
	sctx, scope := scoped.Begin(rctx)
	hctx, handler := tracer.Start(sctx, "load user")
	if _, err := users.Current(hctx); err != nil {
		t.Fatal(err)
	}
	handler.End()
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	req.End()
	got := tel.spansNamed("scoped users")
	if len(got) != 1 {
		t.Fatalf("spans %v, want one \"scoped users\"", names(tel.exp.GetSpans()))
	}
	if got[0].Parent.SpanID() != req.SpanContext().SpanID() || got[0].SpanContext.TraceID() != req.SpanContext().TraceID() {
		t.Errorf("session span's parent %v, want the request's %v (the handler's is %v)",
			got[0].Parent.SpanID(), req.SpanContext().SpanID(), handler.SpanContext().SpanID())
	}

	// Keyed: the creating caller's span.
	type tenant struct{}
	keyed := scoped.New((&fakeDB{}).begin, scoped.WithName("keyed"), scoped.WithTeardownErrorHook(nil),
		scoped.WithScopeFunc(scoped.ContextValue(tenant{})), tel.instrument())
	kctx, job := tracer.Start(context.WithValue(context.Background(), tenant{}, "acme"), "job")
	if _, err := keyed.Current(kctx); err != nil {
		t.Fatal(err)
	}
	job.End()
	if err := keyed.Close(); err != nil {
		t.Fatal(err)
	}
	kspans := tel.spansNamed("scoped keyed")
	if len(kspans) != 1 || kspans[0].Parent.SpanID() != job.SpanContext().SpanID() {
		t.Errorf("keyed spans %v, want one, child of the job's span", kspans)
	} else {
		wantAttr(t, kspans[0], "scoped.outcome", attribute.StringValue("rolled_back"))
	}

	// The safety net, on a goroutine of its own.
	pctx, cancel := context.WithCancel(context.Background())
	pctx, netReq := tracer.Start(pctx, "abandoned")
	nctx, nscope := scoped.Begin(pctx)
	if _, err := users.Current(nctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	testkit.Eventually(t, "the safety net", func() bool { return nscope.Err() != nil })
	netReq.End()
	testkit.Eventually(t, "the safety net's span", func() bool { return len(tel.spansNamed("scoped users")) == 2 })
	s := tel.spansNamed("scoped users")[1]
	if s.Parent.SpanID() != netReq.SpanContext().SpanID() {
		t.Errorf("safety net's session span: parent %v, want %v", s.Parent.SpanID(), netReq.SpanContext().SpanID())
	}
	wantAttr(t, s, "scoped.outcome", attribute.StringValue("rolled_back"))
	_ = nscope.Remove()
}

// A traced unit hook registered under a service span inside a nested
// unit runs, after the root committed, as a child of that service span in
// the request's trace; one registered with OnRollback in a child that
// rolls back, likewise, at the child's rollback.
func TestReview7TraceHookParentIsWhereItWasRegistered(t *testing.T) {
	tel := newTelemetry(t)
	tracer := tel.tp.Tracer("test")
	users := tel.sessions(&fakeDB{}, "users")
	opt := scopedotel.WithTracerProvider(tel.tp)
	errChild := errors.New("child fails")

	ctx, req := tracer.Start(context.Background(), "POST /orders")
	var saved, undone trace.SpanContext
	err := scoped.Run(ctx, func(ctx context.Context) error {
		if _, err := users.Current(ctx); err != nil {
			return err
		}
		if err := scoped.Run(ctx, func(ctx context.Context) error {
			ctx, sp := tracer.Start(ctx, "save order")
			defer sp.End()
			saved = sp.SpanContext()
			if _, err := users.Current(ctx); err != nil {
				return err
			}
			return scoped.OnCommit(ctx, scopedotel.TraceHook("publish", func(context.Context) {}, opt))
		}); err != nil {
			return err
		}
		_ = scoped.Run(ctx, func(ctx context.Context) error {
			ctx, sp := tracer.Start(ctx, "reserve stock")
			defer sp.End()
			undone = sp.SpanContext()
			if err := scoped.OnRollback(ctx, scopedotel.TraceHook("release stock", func(context.Context) {}, opt)); err != nil {
				return err
			}
			return errChild
		})
		return nil
	})
	req.End()
	if err != nil {
		t.Fatal(err)
	}
	for name, parent := range map[string]trace.SpanContext{"scoped hook publish": saved, "scoped hook release stock": undone} {
		got := tel.spansNamed(name)
		if len(got) != 1 {
			t.Errorf("spans %v, want one %q", names(tel.exp.GetSpans()), name)
			continue
		}
		if got[0].Parent.SpanID() != parent.SpanID() || got[0].SpanContext.TraceID() != req.SpanContext().TraceID() {
			t.Errorf("%s: parent %v in %v, want %v in the request's trace %v", name,
				got[0].Parent.SpanID(), got[0].SpanContext.TraceID(), parent.SpanID(), req.SpanContext().TraceID())
		}
	}
}

// A traced hook that calls runtime.Goexit (t.FailNow) ends its span,
// with outcome exited, and the goroutine still exits.
func TestReview7TraceHookGoexitEndsItsSpan(t *testing.T) {
	oc := &openCount{open: map[string]int{}}
	tel := newTelemetry(t, sdktrace.WithSpanProcessor(oc))
	h := scopedotel.TraceHook("exits", func(context.Context) { runtime.Goexit() }, scopedotel.WithTracerProvider(tel.tp))
	returned := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		h(context.Background())
		returned = true
	}()
	<-done
	if returned {
		t.Fatal("the hook's Goexit did not end the goroutine")
	}
	got := tel.spansNamed("scoped hook exits")
	if len(got) != 1 {
		t.Fatalf("spans %v, want one", names(tel.exp.GetSpans()))
	}
	wantAttr(t, got[0], "scoped.hook.outcome", attribute.StringValue("exited"))
	oc.check(t)
}

// exitingTx is a transaction whose rollback ends its goroutine
// (runtime.Goexit, as t.FailNow in a fake does) or panics.
type exitingTx struct{ how string }

func (*exitingTx) Commit(context.Context) error { return nil }
func (x *exitingTx) Rollback(context.Context) error {
	switch x.how {
	case "goexit":
		runtime.Goexit()
	case "panic":
		panic("rollback panics")
	}
	return nil
}

// Every span started under the bound is ended once, whatever ends its
// session: keyed sessions held until Close, the safety net on its
// goroutine, a teardown that panics, one that calls runtime.Goexit, one
// past its teardown timeout; sessions over the bound get none and hold no
// room; and afterwards the whole bound is free again.
func TestReview7MaxOpenSpansLeaksNothing(t *testing.T) {
	quietSlog(t)
	oc := &openCount{open: map[string]int{}}
	tel := newTelemetry(t, sdktrace.WithSpanProcessor(oc))
	const bound = 3
	hook := scopedotel.Hook(scopedotel.WithTracerProvider(tel.tp), scopedotel.WithMeterProvider(tel.mp),
		scopedotel.WithMaxOpenSpans(bound))

	// Keyed sessions: more than the bound, held until Close.
	type tenant struct{}
	keyed := scoped.New((&fakeDB{}).begin, scoped.WithName("keyed"), scoped.WithTeardownErrorHook(nil),
		scoped.WithScopeFunc(scoped.ContextValue(tenant{})), scoped.WithEventHook(hook))
	for i := range bound + 2 {
		if _, err := keyed.Current(context.WithValue(context.Background(), tenant{}, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := keyed.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(tel.spansNamed("scoped keyed")); got != bound {
		t.Errorf("%d keyed spans for %d sessions open at once under a bound of %d, want %d", got, bound+2, bound, bound)
	}
	oc.check(t)

	// Teardowns that panic and that Goexit, and one past its bound.
	exits := scoped.New(func(ctx context.Context) (*exitingTx, error) {
		return &exitingTx{how: ctx.Value(howKey{}).(string)}, nil
	},
		scoped.WithName("exits"), scoped.WithTeardownErrorHook(nil), scoped.WithEventHook(hook))
	for _, how := range []string{"panic", "goexit"} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			ctx, scope := scoped.Begin(context.WithValue(context.Background(), howKey{}, how))
			if _, err := exits.Current(ctx); err != nil {
				t.Error(err)
			}
			_ = scope.Remove()
		}()
		<-done
	}
	release := make(chan struct{})
	slow := scoped.New(func(context.Context) (*slowTx, error) { return &slowTx{release: release}, nil },
		scoped.WithName("slow"), scoped.WithTeardownErrorHook(nil), scoped.WithTeardownTimeout(time.Millisecond),
		scoped.WithEventHook(hook))
	sctx, sscope := scoped.Begin(context.Background())
	if _, err := slow.Current(sctx); err != nil {
		t.Fatal(err)
	}
	if err := sscope.Remove(); !errors.Is(err, scoped.ErrTeardownTimeout) {
		t.Fatalf("Remove: %v, want ErrTeardownTimeout", err)
	}
	close(release)
	for name, want := range map[string]string{"scoped exits": "failed", "scoped slow": "failed"} {
		for _, s := range tel.spansNamed(name) {
			wantAttr(t, s, "scoped.outcome", attribute.StringValue(want))
			if s.Status.Code != codes.Error {
				t.Errorf("%s: status %v, want Error", name, s.Status.Code)
			}
		}
	}
	if got := len(tel.spansNamed("scoped exits")); got != 2 {
		t.Errorf("%d spans of a panicking and an exiting teardown, want 2", got)
	}
	oc.check(t)

	// The safety net ends sessions on its own goroutine; more sessions than
	// the bound at once.
	users := scoped.New((&fakeDB{}).begin, scoped.WithName("users"), scoped.WithTeardownErrorHook(nil), scoped.WithEventHook(hook))
	var scopes []*scoped.Scope
	var cancels []context.CancelFunc
	for range bound + 2 {
		ctx, cancel := context.WithCancel(context.Background())
		ctx, scope := scoped.Begin(ctx)
		if _, err := users.Current(ctx); err != nil {
			t.Fatal(err)
		}
		scopes, cancels = append(scopes, scope), append(cancels, cancel)
	}
	for _, c := range cancels {
		c()
	}
	for _, s := range scopes {
		testkit.Eventually(t, "the safety net", func() bool { return s.Err() != nil })
		_ = s.Remove()
	}
	testkit.Eventually(t, "the safety net's spans", func() bool { return len(tel.spansNamed("scoped users")) == bound })
	oc.check(t)

	// The whole bound is free: as many sessions open at once all get a span.
	before := len(tel.spansNamed("scoped users"))
	var open []*scoped.Scope
	for range bound {
		ctx, scope := scoped.Begin(context.Background())
		if _, err := users.Current(ctx); err != nil {
			t.Fatal(err)
		}
		open = append(open, scope)
	}
	for _, s := range open {
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(tel.spansNamed("scoped users")) - before; got != bound {
		t.Errorf("%d spans for %d sessions once every earlier one ended, want %d: room leaked", got, bound, bound)
	}
	oc.check(t)
}

type howKey struct{}

// panicOnStart is a span processor that panics when a span named name
// starts, once.
type panicOnStart struct {
	name string
	once sync.Once
}

func (p *panicOnStart) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	if s.Name() == p.name {
		p.once.Do(func() { panic("span processor panics") })
	}
}
func (*panicOnStart) OnEnd(sdktrace.ReadOnlySpan)      {}
func (*panicOnStart) Shutdown(context.Context) error   { return nil }
func (*panicOnStart) ForceFlush(context.Context) error { return nil }

// A span processor (user code) that panics as a session's span starts
// costs that session its span, not the bound's room for good: with a
// bound of one, the next session still gets a span.
func TestReview7PanickingSpanStartKeepsNoRoom(t *testing.T) {
	quietSlog(t)
	tel := newTelemetry(t, sdktrace.WithSpanProcessor(&panicOnStart{name: "scoped users"}))
	users := tel.sessions(&fakeDB{}, "users", scopedotel.WithMaxOpenSpans(1))
	for range 2 {
		if err := scoped.Run(context.Background(), func(ctx context.Context) error {
			_, err := users.Current(ctx)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(tel.spansNamed("scoped users")); got != 1 {
		t.Errorf("%d spans after the processor panicked once, then a session ran alone under a bound of 1; want 1", got)
	}
}

// After a mixed workload (commits, rollbacks, closes, commit and rollback
// failures, factory errors and panics, teardown panics, nested units that
// release, roll back and fail to begin), the metrics of the root sessions
// equal the ScopedSession's Stats field by field, and every nested
// measurement carries scoped.session.nested=true.
func TestReview7MetricsEqualStats(t *testing.T) {
	quietSlog(t)
	tel := newTelemetry(t)
	db := &mixedDB{}
	users := scoped.New(db.begin, scoped.WithName("users"), scoped.WithTeardownErrorHook(nil), tel.instrument())
	conns := scoped.New(func(context.Context) (*closer, error) { return &closer{}, nil },
		scoped.WithName("conns"), scoped.WithTeardownErrorHook(nil), tel.instrument())
	errApp := errors.New("app error")

	run := func(mode string, nested ...string) {
		func() {
			defer func() { _ = recover() }()
			_ = scoped.Run(context.WithValue(context.Background(), modeKey{}, mode), func(ctx context.Context) error {
				if _, err := users.Current(ctx); err != nil {
					return err
				}
				if _, err := conns.Current(ctx); err != nil {
					return err
				}
				for _, n := range nested {
					_ = scoped.Run(context.WithValue(ctx, modeKey{}, n), func(ctx context.Context) error {
						if _, err := users.Current(ctx); err != nil {
							return err
						}
						if n == "inner fails" {
							return errApp
						}
						return nil
					})
				}
				if mode == "app error" {
					return errApp
				}
				return nil
			})
		}()
	}
	for range 3 {
		run("ok", "ok", "inner fails", "savepoint fails")
		run("app error", "ok")
		run("commit fails")
		run("rollback fails")
		run("factory fails")
		run("factory panics")
		run("commit panics")
	}

	rm := tel.collect(t)
	root, nested := attribute.Bool("scoped.session.nested", false), attribute.Bool("scoped.session.nested", true)
	for _, r := range []struct {
		name string
		st   scoped.Stats
	}{{"users", users.Stats()}, {"conns", conns.Stats()}} {
		sess := attribute.String("scoped.session.name", r.name)
		outcome := func(o string) int64 {
			return sum(t, rm, "scoped.session.ended", sess, root, attribute.String("scoped.outcome", o))
		}
		got := scoped.Stats{
			Live:       sum(t, rm, "scoped.session.count", sess, root),
			Created:    sum(t, rm, "scoped.session.created", sess, root),
			Committed:  outcome("committed"),
			RolledBack: outcome("rolled_back") + outcome("closed"),
			Failed:     outcome("failed") + sum(t, rm, "scoped.session.create_failures", sess, root),
		}
		if got != r.st {
			t.Errorf("%s: metrics of root sessions %+v, Stats %+v", r.name, got, r.st)
		}
	}
	users0 := attribute.String("scoped.session.name", "users")
	if got := sum(t, rm, "scoped.session.create_failures", users0, nested); got != 3 {
		t.Errorf("nested create_failures = %d, want 3 (one savepoint refused per round)", got)
	}
	if got := sum(t, rm, "scoped.session.created", users0, nested); got != 9 {
		t.Errorf("nested created = %d, want 9", got)
	}
	for _, s := range tel.spansNamed("scoped users") {
		if v, _ := attr(s, "scoped.outcome"); v.AsString() == "create_failed" {
			if e, _ := attr(s, "error.type"); e.AsString() == "" {
				t.Errorf("create_failed span without error.type")
			}
		}
	}
	if got := len(tel.spansNamed("scoped savepoint users")); got != 12 {
		t.Errorf("%d savepoint spans, want 12 (9 created, 3 refused)", got)
	}
}

type modeKey struct{}

// mixedDB's transactions behave as the mode in their factory's context
// says.
type mixedDB struct{}

type mixedTx struct{ mode string }

func (*mixedDB) begin(ctx context.Context) (*mixedTx, error) {
	mode, _ := ctx.Value(modeKey{}).(string)
	switch mode {
	case "factory fails":
		return nil, errors.New("no connection")
	case "factory panics":
		panic("factory panics")
	}
	return &mixedTx{mode: mode}, nil
}

func (x *mixedTx) Begin(ctx context.Context) (*mixedTx, error) {
	if mode, _ := ctx.Value(modeKey{}).(string); mode == "savepoint fails" {
		return nil, errors.New("savepoint refused")
	}
	return &mixedTx{mode: x.mode}, nil
}

func (x *mixedTx) Commit(context.Context) error {
	switch x.mode {
	case "commit fails":
		return errRefused
	case "commit panics":
		panic("commit panics")
	}
	return nil
}

func (x *mixedTx) Rollback(context.Context) error {
	if x.mode == "rollback fails" {
		return errors.New("rollback: connection lost")
	}
	return nil
}

// A factory failure's span and count carry db.system.name and the
// attributes given, as the sessions' do.
func TestReview7FailureAttributes(t *testing.T) {
	tel := newTelemetry(t)
	users := tel.sessions(&fakeDB{factoryErr: errors.New("pool closed")}, "users", scopedotel.WithDBSystem("mariadb"),
		scopedotel.WithAttributes(attribute.String("db.namespace", "shop")))
	_ = scoped.Run(context.Background(), func(ctx context.Context) error { _, err := users.Current(ctx); return err })
	spans := tel.spansNamed("scoped users")
	if len(spans) != 1 {
		t.Fatalf("spans %v, want one", names(tel.exp.GetSpans()))
	}
	wantAttr(t, spans[0], "db.system.name", attribute.StringValue("mariadb"))
	wantAttr(t, spans[0], "db.namespace", attribute.StringValue("shop"))
	rm := tel.collect(t)
	if got := sum(t, rm, "scoped.session.create_failures", attribute.String("db.system.name", "mariadb"),
		attribute.String("db.namespace", "shop")); got != 1 {
		t.Errorf("create_failures with the attributes = %d, want 1", got)
	}
}
