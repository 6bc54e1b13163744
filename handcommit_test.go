package scoped_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-scoped/scoped"
)

// handTx is a session whose commits are counted: what a database saved.
type handTx struct {
	saved *int
	fail  error // the commit's error, if any
}

func (h *handTx) Commit(context.Context) error {
	if h.fail != nil {
		return h.fail
	}
	*h.saved++
	return nil
}
func (h *handTx) Rollback(context.Context) error { return nil }

var errHandConflict = errors.New("conflict")

// A root Run with WithRetry whose fn committed a session by hand
// (ScopedSession.Commit) and then failed retryably, in fn or at the
// scope's commit of a later session, saved part of its work: it must not
// be run again (scoped.MayRetry's rule: a unit that saved something is
// never run again), and its error must say that part was saved
// (ErrPartiallyCommitted), not that nothing was.
func TestRetryAfterHandCommit(t *testing.T) {
	for _, where := range []string{"fn", "commit"} {
		t.Run(where, func(t *testing.T) {
			saved, runs := 0, 0
			txs := scoped.New(func(ctx context.Context) (*handTx, error) {
				tx := &handTx{saved: &saved}
				if where == "commit" && saved > runs-1 {
					// The session made after the hand commit fails its commit.
					tx.fail = errHandConflict
				}
				return tx, nil
			}, scoped.WithTeardownErrorHook(nil))
			err := scoped.Run(context.Background(), func(ctx context.Context) error {
				runs++
				if _, err := txs.Current(ctx); err != nil {
					return err
				}
				if err := txs.Commit(ctx); err != nil {
					return err
				}
				if where == "fn" {
					return errHandConflict
				}
				_, err := txs.Current(ctx) // a new session, whose commit fails
				return err
			}, scoped.WithRetry(3, func(err error) bool { return errors.Is(err, errHandConflict) }))
			if err == nil {
				t.Fatal("Run succeeded, want its failure")
			}
			if saved != 1 || runs != 1 {
				t.Errorf("fn ran %d times and its hand commit saved %d times, want once each (err %v)", runs, saved, err)
			}
			if where == "commit" && !errors.Is(err, scoped.ErrPartiallyCommitted) {
				t.Errorf("Run: %v, want ErrPartiallyCommitted: the hand-committed session is saved", err)
			}
		})
	}
}

// In a child unit every session is a part of an ancestor's (a savepoint):
// one committed by hand there was released, not saved, so a failed commit
// of the child afterwards saved nothing and says so (ErrNotCommitted, not
// ErrPartiallyCommitted), and the root may still run again.
func TestHandReleaseInAChildIsNotASave(t *testing.T) {
	saved := 0
	errRelease := errors.New("release failed")
	newNested := func(failRelease bool) *scoped.ScopedSession[*handTx] {
		return scoped.New(func(ctx context.Context) (*handTx, error) { return &handTx{saved: &saved}, nil },
			scoped.WithTeardownErrorHook(nil),
			scoped.WithNesting(func(_ context.Context, p *handTx) (scoped.Nested[*handTx], error) {
				return scoped.Nested[*handTx]{
					Session: p,
					Release: func(context.Context) error {
						if failRelease {
							return errRelease
						}
						return nil
					},
					Rollback: func(context.Context) error { return nil },
				}, nil
			}))
	}
	a, b := newNested(false), newNested(true)
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		_, _ = a.Current(ctx) // the root's sessions
		_, _ = b.Current(ctx)
		childErr := scoped.Run(ctx, func(ctx context.Context) error {
			if _, err := a.Current(ctx); err != nil {
				return err
			}
			if err := a.Commit(ctx); err != nil { // a release by hand
				return err
			}
			_, err := b.Current(ctx) // its release fails at the child's commit
			return err
		})
		if !errors.Is(childErr, scoped.ErrNotCommitted) || errors.Is(childErr, scoped.ErrPartiallyCommitted) {
			t.Errorf("child: %v, want ErrNotCommitted and not ErrPartiallyCommitted: a release saves nothing", childErr)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("root: %v", err)
	}
}
