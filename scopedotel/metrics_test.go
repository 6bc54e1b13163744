package scopedotel_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedotel"
)

// After N sessions with known ends, every counter is exact, the commit
// histogram has one observation per commit, and the session count is back
// to 0 (and was N while they were open).
func TestMetricsExact(t *testing.T) {
	tel := newTelemetry(t)
	good, bad := &fakeDB{}, &fakeDB{commitErr: errRefused}
	users := tel.sessions(good, "users", scopedotel.WithDBSystem("postgresql"))
	failing := tel.sessions(bad, "orders", scopedotel.WithDBSystem("postgresql"))
	const commits, rollbacks, failures = 12, 5, 3

	var scopes []*scoped.Scope
	open := func(r *scoped.ScopedSession[*fakeTx]) *scoped.Scope {
		ctx, scope := scoped.Begin(context.Background())
		if _, err := r.Current(ctx); err != nil {
			t.Fatal(err)
		}
		scopes = append(scopes, scope)
		return scope
	}
	for range commits + rollbacks {
		open(users)
	}
	for range failures {
		open(failing)
	}
	rm := tel.collect(t)
	if got := sum(t, rm, "scoped.session.count"); got != commits+rollbacks+failures {
		t.Errorf("session count with all open = %d, want %d", got, commits+rollbacks+failures)
	}
	for i, s := range scopes {
		var err error
		switch {
		case i < commits:
			err = s.Commit()
		case i < commits+rollbacks:
			err = s.Remove()
		default:
			if err = s.Commit(); !errors.Is(err, errRefused) {
				t.Errorf("failing commit: %v", err)
			}
			err = nil
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	rm = tel.collect(t)
	pg := attribute.String("db.system.name", "postgresql")
	usersAttr := attribute.String("scoped.session.name", "users")
	ordersAttr := attribute.String("scoped.session.name", "orders")
	checks := []struct {
		what string
		got  int64
		want int64
	}{
		{"created users", sum(t, rm, "scoped.session.created", pg, usersAttr, attribute.Bool("scoped.session.nested", false)), commits + rollbacks},
		{"created orders", sum(t, rm, "scoped.session.created", ordersAttr), failures},
		{"ended committed", sum(t, rm, "scoped.session.ended", usersAttr, attribute.String("scoped.outcome", "committed")), commits},
		{"ended rolled back", sum(t, rm, "scoped.session.ended", usersAttr, attribute.String("scoped.outcome", "rolled_back")), rollbacks},
		{"ended failed", sum(t, rm, "scoped.session.ended", ordersAttr, attribute.String("scoped.outcome", "failed"), attribute.String("error.type", "_OTHER")), failures},
		{"ended in all", sum(t, rm, "scoped.session.ended"), commits + rollbacks + failures},
		{"create failures", sum(t, rm, "scoped.session.create_failures"), 0},
		{"session count", sum(t, rm, "scoped.session.count"), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
	n, total, bounds := histogram(t, rm, "scoped.session.commit.duration", usersAttr, attribute.String("scoped.outcome", "committed"))
	if n != commits || total < 0 {
		t.Errorf("commit duration: %d observations (sum %v s), want %d", n, total, commits)
	}
	if len(bounds) == 0 || bounds[0] != 0.001 {
		t.Errorf("commit duration buckets %v, want the conventions' seconds buckets from 0.001", bounds)
	}
	if n, _, _ := histogram(t, rm, "scoped.session.commit.duration", ordersAttr, attribute.String("scoped.outcome", "failed")); n != failures {
		t.Errorf("failed commit durations: %d observations, want %d", n, failures)
	}
	if n, _, _ := histogram(t, rm, "scoped.session.commit.duration"); n != commits+failures {
		t.Errorf("commit durations: %d observations, want %d (rollbacks are not commits)", n, commits+failures)
	}
	if st := users.Stats(); st.Created != commits+rollbacks || st.Committed != commits {
		t.Errorf("Stats %+v disagree with the metrics", st)
	}
}

// Factory failures count apart from sessions: no session was created, so
// created, ended and the session count do not move.
func TestMetricsFactoryFailure(t *testing.T) {
	tel := newTelemetry(t)
	users := tel.sessions(&fakeDB{factoryErr: errors.New("fake: no connection")}, "users")
	panicky := scoped.New(func(context.Context) (*fakeTx, error) { panic("boom") },
		scoped.WithName("panicky"), tel.instrument())
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	for range 2 {
		if _, err := users.Current(ctx); err == nil {
			t.Fatal("Current succeeded with a failing factory")
		}
	}
	func() {
		defer func() { _ = recover() }()
		_, _ = panicky.Current(ctx)
	}()
	rm := tel.collect(t)
	if got := sum(t, rm, "scoped.session.create_failures", attribute.String("scoped.session.name", "users"), attribute.String("error.type", "_OTHER")); got != 2 {
		t.Errorf("create failures of users = %d, want 2", got)
	}
	if got := sum(t, rm, "scoped.session.create_failures", attribute.String("scoped.session.name", "panicky"), attribute.String("error.type", "panic")); got != 1 {
		t.Errorf("create failures of panicky (error.type panic) = %d, want 1", got)
	}
	for _, name := range []string{"scoped.session.created", "scoped.session.ended", "scoped.session.count"} {
		if got := sum(t, rm, name); got != 0 {
			t.Errorf("%s = %d after factory failures only, want 0", name, got)
		}
	}
}

// Nested units of work count as sessions with scoped.session.nested=true.
func TestMetricsNested(t *testing.T) {
	tel := newTelemetry(t)
	users := tel.sessions(&fakeDB{}, "users")
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		if _, err := users.Current(ctx); err != nil {
			return err
		}
		for range 3 {
			if err := scoped.Run(ctx, func(ctx context.Context) error { _, err := users.Current(ctx); return err }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rm := tel.collect(t)
	nested, root := attribute.Bool("scoped.session.nested", true), attribute.Bool("scoped.session.nested", false)
	if got := sum(t, rm, "scoped.session.created", nested); got != 3 {
		t.Errorf("nested created = %d, want 3", got)
	}
	if got := sum(t, rm, "scoped.session.created", root); got != 1 {
		t.Errorf("root created = %d, want 1", got)
	}
	if got := sum(t, rm, "scoped.session.ended", nested, attribute.String("scoped.outcome", "committed")); got != 3 {
		t.Errorf("nested committed = %d, want 3", got)
	}
	if got := sum(t, rm, "scoped.session.count"); got != 0 {
		t.Errorf("session count = %d, want 0", got)
	}
}

// Many goroutines' sessions at once: every span ends, every counter is
// exact, nothing is left open (run with -race).
func TestConcurrentSessions(t *testing.T) {
	tel := newTelemetry(t)
	users := tel.sessions(&fakeDB{}, "users")
	const workers, each = 8, 100
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				ctx, scope := scoped.Begin(context.Background())
				if _, err := users.Current(ctx); err != nil {
					t.Error(err)
				}
				if err := scope.Commit(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if got := len(tel.spansNamed("scoped users")); got != workers*each {
		t.Errorf("%d spans, want %d", got, workers*each)
	}
	rm := tel.collect(t)
	if got := sum(t, rm, "scoped.session.ended", attribute.String("scoped.outcome", "committed")); got != workers*each {
		t.Errorf("committed = %d, want %d", got, workers*each)
	}
	if got := sum(t, rm, "scoped.session.count"); got != 0 {
		t.Errorf("session count = %d, want 0", got)
	}
	if n, _, _ := histogram(t, rm, "scoped.session.commit.duration"); n != workers*each {
		t.Errorf("commit durations: %d, want %d", n, workers*each)
	}
}
