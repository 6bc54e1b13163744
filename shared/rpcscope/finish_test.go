package rpcscope_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedtest"
	"github.com/go-scoped/scoped/shared/rpcscope"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(scopedtest.CheckScopesM(m))
}

var errEndedEarly = errors.New("pkg: call ended before the commit point")

// session counts how its sessions ended; commitErr and closeErr are what
// its commit and close return.
type session struct {
	committed, rolledBack, closed int
	commitErr, closeErr           error
}

type tx struct{}

// begin starts a scope (without the safety net, so that nothing but
// Finish ends it) holding one session of s.
func (s *session) begin(t *testing.T, ctx context.Context) *scoped.Scope {
	t.Helper()
	r := scoped.New(func(context.Context) (*tx, error) { return &tx{}, nil },
		scoped.WithCommit(func(context.Context, *tx) error { s.committed++; return s.commitErr }),
		scoped.WithRollback(func(context.Context, *tx) error { s.rolledBack++; return nil }),
		scoped.WithClose(func(context.Context, *tx) error { s.closed++; return s.closeErr }),
		scoped.WithTeardownErrorHook(nil)) // Finish's result is what the tests assert
	ctx, scope := scoped.BeginWithoutSafetyNet(ctx)
	if _, err := r.Current(ctx); err != nil {
		t.Fatal(err)
	}
	return scope
}

func (s *session) want(t *testing.T, committed, rolledBack int) {
	t.Helper()
	if s.committed != committed || s.rolledBack != rolledBack {
		t.Errorf("committed %d, rolled back %d; want %d, %d", s.committed, s.rolledBack, committed, rolledBack)
	}
}

func TestNoCommitRollsBack(t *testing.T) {
	var s session
	if err := rpcscope.Finish(context.Background(), s.begin(t, context.Background()), false, "pkg", errEndedEarly); err != nil {
		t.Errorf("Finish = %v, want nil: the handler's outcome stands", err)
	}
	s.want(t, 0, 1)
}

func TestCommit(t *testing.T) {
	var s session
	if err := rpcscope.Finish(context.Background(), s.begin(t, context.Background()), true, "pkg", errEndedEarly); err != nil {
		t.Errorf("Finish = %v, want nil", err)
	}
	s.want(t, 1, 0)
}

func TestEndedBeforeTheCommitPointRollsBack(t *testing.T) {
	var s session
	ctx, cancel := context.WithCancel(context.Background())
	scope := s.begin(t, ctx)
	cancel()
	err := rpcscope.Finish(ctx, scope, true, "pkg", errEndedEarly)
	if !errors.Is(err, errEndedEarly) || !errors.Is(err, context.Canceled) {
		t.Errorf("Finish = %v, want errEndedEarly wrapping context.Canceled", err)
	}
	s.want(t, 0, 1)
}

func TestScopeEndedByTheHandlerIsLeftAlone(t *testing.T) {
	var s session
	scope := s.begin(t, context.Background())
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := rpcscope.Finish(context.Background(), scope, true, "pkg", errEndedEarly); err != nil {
		t.Errorf("Finish = %v, want nil: nothing left to decide", err)
	}
	s.want(t, 0, 1)
}

func TestFailedCommitIsTheCause(t *testing.T) {
	s := session{commitErr: errors.New("serialization failure")}
	err := rpcscope.Finish(context.Background(), s.begin(t, context.Background()), true, "scopedgrpc", errEndedEarly)
	if err == nil || !strings.HasPrefix(err.Error(), "scopedgrpc: ") || !errors.Is(err, s.commitErr) {
		t.Errorf("Finish = %v, want the commit error with the package prefix", err)
	}
	if errors.Is(err, errEndedEarly) {
		t.Errorf("Finish = %v: a failed commit is not a call that ended early", err)
	}
}

func TestCloseFailingAfterTheCommitLosesNothing(t *testing.T) {
	s := session{closeErr: errors.New("connection reset")}
	if err := rpcscope.Finish(context.Background(), s.begin(t, context.Background()), true, "pkg", errEndedEarly); err != nil {
		t.Errorf("Finish = %v, want nil: the commit succeeded", err)
	}
	s.want(t, 1, 0)
	if s.closed != 1 {
		t.Errorf("closed %d, want 1", s.closed)
	}
}
