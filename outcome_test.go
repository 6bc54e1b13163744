package scoped_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	_ "github.com/go-scoped/scoped/scopedsql" // its rules for lost connections
)

// The error of a commit says what it means for the work, so that a caller
// never answers "not saved" for work that was saved, nor OK for work that
// was not.
func TestCommitErrorSaysWhatWasSaved(t *testing.T) {
	errCommit, errClose := errors.New("commit refused"), errors.New("close refused")
	for _, c := range []struct {
		name      string
		commitErr []error // per committable session, in creation order
		closeErr  error   // of a non-committable session created last
		want      error
		notWant   []error
	}{
		{"first commit fails", []error{errCommit, nil}, nil, scoped.ErrNotCommitted,
			[]error{scoped.ErrPartiallyCommitted, scoped.ErrCommittedCloseFailed}},
		{"second commit fails", []error{nil, errCommit}, nil, scoped.ErrPartiallyCommitted,
			[]error{scoped.ErrNotCommitted, scoped.ErrCommittedCloseFailed}},
		{"close fails after commits", []error{nil, nil}, errClose, scoped.ErrCommittedCloseFailed,
			[]error{scoped.ErrNotCommitted, scoped.ErrPartiallyCommitted}},
		{"unknown outcome of the first commit", []error{scoped.ErrCommitUnknown, nil}, nil, scoped.ErrCommitUnknown,
			[]error{scoped.ErrNotCommitted, scoped.ErrCommittedCloseFailed}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, scope := scoped.Begin(context.Background())
			for i, cerr := range c.commitErr {
				tx := mustCurrent(t, txSession(nil, "tx"+string(rune('a'+i)), new(atomic.Int64), scoped.WithTeardownErrorHook(nil)), ctx)
				tx.commitErr = cerr
			}
			conns := connSession(nil, "conn", c.closeErr)
			mustCurrent(t, conns, ctx)
			err := scope.Commit()
			if !errors.Is(err, c.want) {
				t.Fatalf("Commit: %v, want errors.Is %v", err, c.want)
			}
			for _, nw := range c.notWant {
				if errors.Is(err, nw) {
					t.Fatalf("Commit: %v, must not be %v", err, nw)
				}
			}
		})
	}
}

// ScopedSession.Commit classifies its one session's end the same way.
func TestScopedSessionCommitErrorSaysWhatWasSaved(t *testing.T) {
	errCommit, errClose := errors.New("commit refused"), errors.New("close refused")
	newSess := func(commitErr, closeErr error) *scoped.ScopedSession[*fakeTx] {
		return scoped.New(func(context.Context) (*fakeTx, error) {
			return &fakeTx{name: "tx", commitErr: commitErr}, nil
		}, scoped.WithClose(func(context.Context, *fakeTx) error { return closeErr }),
			scoped.WithTeardownErrorHook(nil))
	}
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	failing, closing := newSess(errCommit, nil), newSess(nil, errClose)
	mustCurrent(t, failing, ctx)
	mustCurrent(t, closing, ctx)
	if err := failing.Commit(ctx); !errors.Is(err, scoped.ErrNotCommitted) || !errors.Is(err, errCommit) {
		t.Fatalf("failed commit: %v, want ErrNotCommitted wrapping the cause", err)
	}
	if err := closing.Commit(ctx); !errors.Is(err, scoped.ErrCommittedCloseFailed) || errors.Is(err, scoped.ErrNotCommitted) {
		t.Fatalf("close failing after commit: %v, want ErrCommittedCloseFailed only", err)
	}
}

// ScopedSession.Commit never claims a commit that did not happen: once the
// safety net (or anything else) ended the scope, it is ErrScopeClosed, as
// Scope.Commit is. It used to return nil, and a job reported success with
// its writes rolled back.
func TestScopedSessionCommitOnEndedScopeIsErrScopeClosed(t *testing.T) {
	for _, how := range []string{"safety net", "Remove"} {
		t.Run(how, func(t *testing.T) {
			r := txSession(nil, "tx", new(atomic.Int64))
			m := newManualCtx(context.Background())
			ctx, scope := scoped.Begin(m)
			tx := mustCurrent(t, r, ctx)
			if how == "Remove" {
				if err := scope.Remove(); err != nil {
					t.Fatal(err)
				}
			} else {
				m.cancel()
				testkit.Eventually(t, "the safety net", func() bool { return scope.Err() != nil })
				_ = scope.Remove() // wait for its teardown to finish
			}
			if err := r.Commit(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
				t.Fatalf("ScopedSession.Commit after %s: %v, want ErrScopeClosed", how, err)
			}
			if tx.commits.Load() != 0 || tx.rollbacks.Load() != 1 {
				t.Fatalf("commits %d rollbacks %d, want 0 and 1", tx.commits.Load(), tx.rollbacks.Load())
			}
			if err := r.Remove(ctx); err != nil {
				t.Fatalf("ScopedSession.Remove after %s: %v, want nil (nothing to undo)", how, err)
			}
		})
	}
}

// A scope its safety net rolled back says so: Err wraps ErrScopeCancelled
// and the context's cause, so that a middleware can tell it from a scope
// its handler ended (and perhaps committed) itself.
func TestScopeErrTellsTheSafetyNetFromTheOwner(t *testing.T) {
	r := txSession(nil, "tx", new(atomic.Int64))
	m := newManualCtx(context.Background())
	ctx, scope := scoped.Begin(m)
	mustCurrent(t, r, ctx)
	m.cancel()
	testkit.Eventually(t, "the safety net", func() bool { return scope.Err() != nil })
	if err := scope.Err(); !errors.Is(err, scoped.ErrScopeClosed) || !errors.Is(err, scoped.ErrScopeCancelled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Err after the net: %v, want ErrScopeClosed, ErrScopeCancelled and the cause", err)
	}
	ctx2, own := scoped.Begin(context.Background())
	mustCurrent(t, r, ctx2)
	if err := own.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := own.Err(); !errors.Is(err, scoped.ErrScopeClosed) || errors.Is(err, scoped.ErrScopeCancelled) {
		t.Fatalf("Err after the owner's Commit: %v, want ErrScopeClosed only", err)
	}
}

// lostTx is a database/sql-style transaction whose Commit fails as a lost
// connection does.
type lostTx struct{ err error }

func (t *lostTx) Commit() error   { return t.err }
func (t *lostTx) Rollback() error { return nil }

// A database/sql commit that lost its connection may have landed: its
// error says "unknown", never "nothing was committed"; a commit the server
// refused still says nothing was. (The drivers' own errors, such as
// go-sql-driver/mysql's "invalid connection", are scopedsql's rules, which
// the default commit asks once scopedsql is linked, as it is here.)
func TestLostConnectionAtCommitIsUnknown(t *testing.T) {
	for _, c := range []struct {
		err     error
		unknown bool
	}{
		{io.ErrUnexpectedEOF, true},
		{driver.ErrBadConn, true},
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, true},
		{errors.New("invalid connection"), true},
		{errors.New("pq: could not serialize access"), false},
	} {
		r := scoped.New(func(context.Context) (*lostTx, error) { return &lostTx{err: c.err}, nil }, scoped.WithTeardownErrorHook(nil))
		ctx, scope := scoped.Begin(context.Background())
		mustCurrent(t, r, ctx)
		err := scope.Commit()
		if errors.Is(err, scoped.ErrCommitUnknown) != c.unknown || errors.Is(err, scoped.ErrNotCommitted) == c.unknown {
			t.Fatalf("%v: Commit returned %v, want unknown=%v", c.err, err, c.unknown)
		}
	}
}
