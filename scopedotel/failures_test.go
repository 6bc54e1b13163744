package scopedotel_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// openCount is a span processor that counts spans started and not yet
// ended, and spans ended more than once.
type openCount struct {
	mu      sync.Mutex
	open    map[string]int // span ID → starts minus ends
	doubled int
}

func (p *openCount) OnStart(_ context.Context, s sdktrace.ReadWriteSpan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open[s.SpanContext().SpanID().String()]++
}

func (p *openCount) OnEnd(s sdktrace.ReadOnlySpan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := s.SpanContext().SpanID().String()
	p.open[id]--
	if p.open[id] < 0 {
		p.doubled++
	}
	if p.open[id] == 0 {
		delete(p.open, id)
	}
}
func (*openCount) Shutdown(context.Context) error   { return nil }
func (*openCount) ForceFlush(context.Context) error { return nil }

func (p *openCount) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.open) != 0 || p.doubled != 0 {
		t.Fatalf("%d span(s) never ended, %d ended twice", len(p.open), p.doubled)
	}
}

// slowTx is a transaction whose rollback waits for release when it is
// set, and whose factory may panic.
type slowTx struct{ release chan struct{} }

func (t *slowTx) Commit(context.Context) error { return nil }
func (t *slowTx) Rollback(context.Context) error {
	if t.release != nil {
		<-t.release
	}
	return nil
}

// Under every kind of failure (factory error and panic, a teardown past
// its bound, the safety net's partial end, hand commits and removes,
// keyed sessions ended concurrently and by Close), each session span is
// ended exactly once, and the metrics count what the events said: as
// many sessions ended as created, none open.
func TestSpansAndMetricsUnderFailures(t *testing.T) {
	oc := &openCount{open: map[string]int{}}
	tel := newTelemetry(t, sdktrace.WithSpanProcessor(oc))
	name := attribute.String("scoped.session.name", "f")

	// A factory that fails, then one that panics.
	var mode atomic.Int32
	release := make(chan struct{})
	txs := scoped.New(func(context.Context) (*slowTx, error) {
		switch mode.Load() {
		case 1:
			return nil, errors.New("no connection")
		case 2:
			panic("factory panics")
		case 3:
			return &slowTx{release: release}, nil
		}
		return &slowTx{}, nil
	}, scoped.WithName("f"), scoped.WithTeardownErrorHook(nil), scoped.WithTeardownTimeout(time.Hour), tel.instrument())
	for m := int32(1); m <= 2; m++ {
		mode.Store(m)
		func() {
			defer func() { _ = recover() }()
			_ = scoped.Run(context.Background(), func(ctx context.Context) error { _, err := txs.Current(ctx); return err })
		}()
	}
	mode.Store(0)

	// Hand commit, hand remove, then the scope's end.
	ctx, scope := scoped.Begin(context.Background())
	for _, end := range []func(context.Context) error{txs.Commit, txs.Remove} {
		if _, err := txs.Current(ctx); err != nil {
			t.Fatal(err)
		}
		if err := end(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}

	// The safety net.
	pctx, cancel := context.WithCancel(context.Background())
	nctx, nscope := scoped.Begin(pctx)
	if _, err := txs.Current(nctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	testkit.Eventually(t, "the safety net", func() bool { return nscope.Err() != nil })

	// Keyed sessions, ended concurrently, then by Close.
	type tenant struct{}
	keyed := scoped.New(func(context.Context) (*slowTx, error) { return &slowTx{}, nil }, scoped.WithName("f"),
		scoped.WithScopeFunc(scoped.ContextValue(tenant{})), scoped.WithTeardownErrorHook(nil), tel.instrument())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				kctx := context.WithValue(context.Background(), tenant{}, i%4)
				switch (g + i) % 3 {
				case 0:
					_, _ = keyed.Current(kctx)
				case 1:
					_ = keyed.Commit(kctx)
				case 2:
					_ = keyed.Remove(kctx)
				}
			}
		}()
	}
	wg.Wait()
	if err := keyed.Close(); err != nil {
		t.Fatal(err)
	}

	rm := tel.collect(t)
	created := sum(t, rm, "scoped.session.created", name)
	ended := sum(t, rm, "scoped.session.ended", name)
	st, kst := txs.Stats(), keyed.Stats()
	if created != st.Created+kst.Created || ended != created || sum(t, rm, "scoped.session.count", name) != 0 {
		t.Fatalf("created %d, ended %d, count %d; stats %+v, keyed %+v",
			created, ended, sum(t, rm, "scoped.session.count", name), st, kst)
	}
	if got := sum(t, rm, "scoped.session.create_failures", name); got != 2 {
		t.Fatalf("create_failures %d, want 2 (an error, a panic)", got)
	}
	oc.check(t)

	// A teardown past its bound: its span ends at the bound, failed, once,
	// and the late end of the teardown adds nothing.
	timed := scoped.New(func(context.Context) (*slowTx, error) { return &slowTx{release: release}, nil }, scoped.WithName("timed"),
		scoped.WithTeardownErrorHook(nil), scoped.WithTeardownTimeout(10*time.Millisecond), tel.instrument())
	tctx, tscope := scoped.Begin(context.Background())
	if _, err := timed.Current(tctx); err != nil {
		t.Fatal(err)
	}
	if err := tscope.Remove(); !errors.Is(err, scoped.ErrTeardownTimeout) {
		t.Fatalf("Remove: %v, want ErrTeardownTimeout", err)
	}
	close(release)
	spans := tel.spansNamed("scoped timed")
	if len(spans) != 1 {
		t.Fatalf("%d spans of the timed-out session, want 1", len(spans))
	}
	if v, _ := attr(spans[0], "error.type"); v.AsString() != "teardown_timeout" {
		t.Fatalf("error.type %q, want teardown_timeout", v.AsString())
	}
	oc.check(t)
}
