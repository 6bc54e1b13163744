package scoped_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

func TestStatsCountEverySessionOutcome(t *testing.T) {
	errCreate := errors.New("create failed")
	errRollback := errors.New("rollback failed")
	errCommit := errors.New("commit failed")
	// Each Current takes the next behaviour.
	plan := []struct {
		createErr, commitErr, rollbackErr error
	}{
		{},                         // 1: committed
		{},                         // 2: rolled back
		{createErr: errCreate},     // 3: factory fails
		{rollbackErr: errRollback}, // 4: rollback fails
		{commitErr: errCommit},     // 5: commit fails
		{},                         // 6: still open
	}
	step := 0
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		p := plan[step]
		step++
		if p.createErr != nil {
			return nil, p.createErr
		}
		return &fakeTx{commitErr: p.commitErr, rollbackErr: p.rollbackErr}, nil
	}, scoped.WithTeardownErrorHook(nil))
	use := func() (context.Context, *scoped.Scope) {
		ctx, scope := scoped.Begin(context.Background())
		_, _ = r.Current(ctx)
		return ctx, scope
	}
	check := func(when string, want scoped.Stats) {
		t.Helper()
		if got := r.Stats(); got != want {
			t.Fatalf("%s: Stats = %+v, want %+v", when, got, want)
		}
	}
	check("start", scoped.Stats{})
	_, s := use()
	check("one open", scoped.Stats{Live: 1, Created: 1})
	_ = s.Commit()
	check("committed", scoped.Stats{Created: 1, Committed: 1})
	_, s = use()
	_ = s.Remove()
	check("rolled back", scoped.Stats{Created: 2, Committed: 1, RolledBack: 1})
	_, s = use()
	_ = s.Remove()
	check("factory failed", scoped.Stats{Created: 2, Committed: 1, RolledBack: 1, Failed: 1})
	_, s = use()
	_ = s.Remove()
	check("rollback failed", scoped.Stats{Created: 3, Committed: 1, RolledBack: 1, Failed: 2})
	_, s = use()
	_ = s.Commit()
	check("commit failed", scoped.Stats{Created: 4, Committed: 1, RolledBack: 1, Failed: 3})
	_, s = use()
	check("open again", scoped.Stats{Live: 1, Created: 5, Committed: 1, RolledBack: 1, Failed: 3})
	_ = s.Remove()
	check("end", scoped.Stats{Created: 5, Committed: 1, RolledBack: 2, Failed: 3})
}

func TestTeardownErrorHookSeesEveryError(t *testing.T) {
	errCommit := errors.New("commit failed")
	errRollback := errors.New("rollback failed")
	errClose := errors.New("close failed")
	sink := &testkit.Errors{}
	tx := func(name string, commitErr, rollbackErr error) *scoped.ScopedSession[*fakeTx] {
		return scoped.New(func(ctx context.Context) (*fakeTx, error) {
			return &fakeTx{name: name, commitErr: commitErr, rollbackErr: rollbackErr}, nil
		}, scoped.WithName(name), scoped.WithTeardownErrorHook(sink.Hook))
	}
	conn := scoped.New(func(ctx context.Context) (*fakeConn, error) {
		return &fakeConn{name: "conn", closeErr: errClose}, nil
	}, scoped.WithTeardownErrorHook(sink.Hook))
	committer, roller := tx("committer", errCommit, nil), tx("roller", nil, errRollback)

	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, conn, ctx)
	mustCurrent(t, committer, ctx)
	mustCurrent(t, roller, ctx)
	err := scope.Commit()
	for _, cause := range []error{errCommit, errRollback, errClose} {
		if !errors.Is(err, cause) {
			t.Errorf("Commit error %v lacks %v", err, cause)
		}
		found := false
		for _, e := range sink.List() {
			found = found || errors.Is(e, cause)
		}
		if !found {
			t.Errorf("hook never saw %v (got %v)", cause, sink.List())
		}
	}
	if n := len(sink.List()); n != 3 {
		t.Errorf("hook called %d times for 3 failing sessions", n)
	}
}

func TestDefaultTeardownErrorHookLogsWithSlog(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(prev)

	errClose := errors.New("connection reset")
	r := scoped.New(func(ctx context.Context) (*fakeConn, error) {
		return &fakeConn{closeErr: errClose}, nil
	}, scoped.WithName("reports"))
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, r, ctx)
	if err := scope.Remove(); !errors.Is(err, errClose) {
		t.Fatalf("Remove = %v", err)
	}
	out := buf.String()
	for _, want := range []string{"level=ERROR", "reports", "connection reset"} {
		if !strings.Contains(out, want) {
			t.Fatalf("slog output %q lacks %q", out, want)
		}
	}
}
