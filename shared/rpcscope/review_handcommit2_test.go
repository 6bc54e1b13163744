package rpcscope_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/rpcscope"
)

// A call whose handler went on after a failed hand commit
// (ScopedSession.Commit) lost that work, whatever the commit point does
// after: when it saves the rest and only a close fails, or commits
// nothing and a close fails, the scope's outcome says so together with
// scoped.ErrCommittedCloseFailed (584da7a), and Finish must not take that
// sentinel alone for "everything saved" and let the handler's OK out.
func TestReviewFailedHandCommitThenCloseFailureIsNotOK(t *testing.T) {
	type conn struct{}
	for _, c := range []struct {
		name        string
		committable bool // the rest is a transaction that commits; else a connection that only closes
		want        error
		msg         string
	}{
		{"rest saved", true, scoped.ErrPartiallyCommitted, "part of the call's changes were saved"},
		{"nothing else to save", false, scoped.ErrNotCommitted, "the call's changes were not saved"},
	} {
		t.Run(c.name, func(t *testing.T) {
			lost := session{commitErr: errors.New("commit failed")}
			ctx, scope := scoped.BeginWithoutSafetyNet(context.Background())
			hand := scoped.New(func(context.Context) (*tx, error) { return &tx{}, nil },
				scoped.WithCommit(func(context.Context, *tx) error { lost.committed++; return lost.commitErr }),
				scoped.WithRollback(func(context.Context, *tx) error { lost.rolledBack++; return nil }),
				scoped.WithTeardownErrorHook(nil))
			opts := []scoped.Option{scoped.WithTeardownErrorHook(nil),
				scoped.WithClose(func(context.Context, *conn) error { return errors.New("connection reset") })}
			saved := 0
			if c.committable {
				opts = append(opts, scoped.WithCommit(func(context.Context, *conn) error { saved++; return nil }),
					scoped.WithRollback(func(context.Context, *conn) error { return nil }))
			}
			rest := scoped.New(func(context.Context) (*conn, error) { return &conn{}, nil }, opts...)
			if _, err := hand.Current(ctx); err != nil {
				t.Fatal(err)
			}
			if err := hand.Commit(ctx); err == nil {
				t.Fatal("hand commit succeeded, want its failure")
			}
			if _, err := rest.Current(ctx); err != nil {
				t.Fatal(err)
			}
			err := rpcscope.Finish(context.Background(), scope, true, "pkg", errEndedEarly)
			if !errors.Is(err, c.want) {
				t.Fatalf("Finish = %v (rest saved %d), want an error wrapping %v: the hand commit's work was lost", err, saved, c.want)
			}
			if answer := pkg.DefaultErrorHandler(context.Background(), err); codeOf(answer) != internal || !strings.Contains(answer.Error(), c.msg) {
				t.Errorf("answer %d %q, want internal saying %q", codeOf(answer), answer, c.msg)
			}
		})
	}
}

// The same through a unary call under WithRetry: not OK, and not run again
// (something may be saved, and the hand commit's failure is no conflict).
func TestReviewFailedHandCommitThenCloseFailureUnary(t *testing.T) {
	type conn struct{}
	errHand := errors.New("commit failed")
	saved, runs := 0, 0
	hand := scoped.New(func(context.Context) (*tx, error) { return &tx{}, nil },
		scoped.WithCommit(func(context.Context, *tx) error { return errHand }),
		scoped.WithRollback(func(context.Context, *tx) error { return nil }),
		scoped.WithTeardownErrorHook(nil))
	rest := scoped.New(func(context.Context) (*conn, error) { return &conn{}, nil }, scoped.WithTeardownErrorHook(nil),
		scoped.WithCommit(func(context.Context, *conn) error { saved++; return nil }),
		scoped.WithRollback(func(context.Context, *conn) error { return nil }),
		scoped.WithClose(func(context.Context, *conn) error { return errors.New("connection reset") }))
	cfg := config(pkg.Mode(rpcscope.Autocommit), pkg.Retry(3, func(error) bool { return true }))
	_, err := rpcscope.Unary(cfg, context.Background(), func(ctx context.Context) (struct{}, error) {
		runs++
		if _, err := hand.Current(ctx); err != nil {
			return struct{}{}, err
		}
		_ = hand.Commit(ctx) // ignored: the handler goes on
		_, err := rest.Current(ctx)
		return struct{}{}, err
	})
	if codeOf(err) == ok || !strings.Contains(fmt.Sprint(err), "part of the call's changes were saved") {
		t.Errorf("call = %d %v, want an error saying part was saved", codeOf(err), err)
	}
	if runs != 1 || saved != 1 {
		t.Errorf("%d runs saved the rest %d times, want 1 and 1", runs, saved)
	}
}
