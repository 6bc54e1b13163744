package scoped_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	creation "github.com/go-scoped/scoped/shared/bound"
	"github.com/go-scoped/scoped/shared/unit"
)

// Review of fb6540f (Current after the net says the cause) and c2b68a2
// (a hand commit of unknown outcome may have saved).

// r3StalledTarget is a watched begin whose Fire stalls until release: the
// safety net, which fires it after it marked the scope byNet and before it
// ends the scope, stands still in between.
type r3StalledTarget struct{ entered, release, fired chan struct{} }

func newR3StalledTarget() *r3StalledTarget {
	return &r3StalledTarget{entered: make(chan struct{}), release: make(chan struct{}), fired: make(chan struct{})}
}

func (b *r3StalledTarget) Fire(error) { close(b.entered); <-b.release; close(b.fired) }

// The net marks the scope byNet, unlocks, fires the watched begins and
// only then ends the scope: a Scope.Commit in that window wins the end
// and commits everything. The scope then says, to Err and now to Current
// (fb6540f), that the net rolled it back because its context ended
// (ErrScopeCancelled, "its work was not saved"), though the commit saved
// it and returned nil. scopedhttp and rpcscope read that sentinel as "not
// saved" when the handler ended the scope itself.
func TestReview3CommitThatWinsTheNetIsNotReportedRolledBack(t *testing.T) {
	safe := &fakeTx{name: "safe"}
	txs := scoped.New(func(context.Context) (*fakeTx, error) { return safe, nil }, scoped.WithTeardownErrorHook(nil))
	target := newR3StalledTarget()
	watched := make(chan struct{})
	begun := scoped.New(watchedBegin(target, target.fired, watched), scoped.WithTeardownErrorHook(nil))
	parent, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	ctx, scope := scoped.Begin(parent)
	defer scope.Remove()
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := begun.Current(ctx); errc <- err }()
	testkit.WaitFor(t, watched, "the watch")
	cancel(errBoundCause)
	testkit.WaitFor(t, target.entered, "the net firing the begin") // byNet is set, the scope not ended
	err := scope.Commit()
	close(target.release)
	testkit.WaitFor(t, errc, "the begin")
	if err != nil || safe.commits.Load() != 1 {
		t.Fatalf("Commit = %v, %d commits: want the Commit to win the end and save", err, safe.commits.Load())
	}
	if err := scope.Err(); errors.Is(err, scoped.ErrScopeCancelled) {
		t.Errorf("Err after a Commit that saved everything = %v, want no ErrScopeCancelled", err)
	}
	if _, err := txs.Current(ctx); errors.Is(err, scoped.ErrScopeCancelled) || !errors.Is(err, scoped.ErrScopeClosed) {
		t.Errorf("Current after a Commit that saved everything = %v, want ErrScopeClosed without ErrScopeCancelled", err)
	}
}

// The net ends a root and, with it, its open children: Current in the
// child (where a handler's scoped.Run works) still says a bare
// ErrScopeClosed, "scope already removed", which fb6540f fixed for the
// root only; so does a child begun after, and a keyed Current from it.
func TestReview3ChildOfARootTheNetEndedSaysTheCause(t *testing.T) {
	txs := scoped.New(func(context.Context) (*fakeTx, error) { return &fakeTx{name: "tx"}, nil },
		scoped.WithTeardownErrorHook(nil))
	type tenant struct{}
	keyed := scoped.New(func(context.Context) (*fakeTx, error) { return &fakeTx{name: "keyed"}, nil },
		scoped.WithTeardownErrorHook(nil), scoped.WithScopeFunc(scoped.ContextValue(tenant{})))
	defer keyed.Close()
	parent, cancel := context.WithCancelCause(context.WithValue(context.Background(), tenant{}, "t1"))
	defer cancel(nil)
	ctx, root := scoped.Begin(parent)
	defer root.Remove()
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	cctx, child := scoped.Begin(ctx)
	defer child.Remove()
	cancel(errBoundCause)
	testkit.Eventually(t, "the net's end of the root", func() bool { return root.Err() != nil })
	_ = root.Remove() // waits for the net's end
	if err := root.Err(); !errors.Is(err, errBoundCause) {
		t.Fatalf("root.Err = %v, want the context's cause", err)
	}
	lctx, late := scoped.Begin(ctx)
	defer late.Remove()
	for _, c := range []struct {
		name string
		err  func() error
	}{
		{"child Err", child.Err},
		{"child Current", func() error { _, err := txs.Current(cctx); return err }},
		{"child keyed Current", func() error { _, err := keyed.Current(cctx); return err }},
		{"late child Current", func() error { _, err := txs.Current(lctx); return err }},
	} {
		if err := c.err(); !errors.Is(err, scoped.ErrScopeClosed) || !errors.Is(err, scoped.ErrScopeCancelled) || !errors.Is(err, errBoundCause) {
			t.Errorf("%s = %v, want ErrScopeClosed, ErrScopeCancelled and the context's cause", c.name, err)
		}
	}
}

// Not a defect: a hand commit, a Remove and a commit after the net ended
// the root all keep ErrScopeClosed (what scopedhttp, rpcscope and
// scopedtest match) with the cause; Has says no.
func TestReview3EverythingAfterTheNetStillMatchesErrScopeClosed(t *testing.T) {
	txs := scoped.New(func(context.Context) (*fakeTx, error) { return &fakeTx{name: "tx"}, nil },
		scoped.WithTeardownErrorHook(nil))
	parent, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	ctx, scope := scoped.Begin(parent)
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	cancel(errBoundCause)
	testkit.Eventually(t, "the net's end", func() bool { return scope.Err() != nil })
	_ = scope.Remove()
	for name, err := range map[string]error{
		"Current":      func() error { _, err := txs.Current(ctx); return err }(),
		"hand Commit":  txs.Commit(ctx),
		"Scope.Commit": scope.Commit(),
		"Run":          scoped.Run(ctx, func(ctx context.Context) error { _, err := txs.Current(ctx); return err }),
	} {
		if !errors.Is(err, scoped.ErrScopeClosed) {
			t.Errorf("%s = %v, want ErrScopeClosed", name, err)
		}
	}
	if err := txs.Remove(ctx); err != nil {
		t.Errorf("Remove = %v, want nil (nothing to remove)", err)
	}
	if txs.Has(ctx) {
		t.Error("Has = true in an ended scope")
	}
}

// r3Unknown is a ScopedSession whose every commit saves (counted in
// saved) and then fails with an unknown outcome.
func r3Unknown(saved *int) *scoped.ScopedSession[*rh2Tx] {
	return scoped.New(func(context.Context) (*rh2Tx, error) { return &rh2Tx{saved: saved, err: errUnknownCommit}, nil },
		scoped.WithTeardownErrorHook(nil))
}

// After a hand commit of unknown outcome, what else the unit did failed:
// the unit's commit is refused, or another hand commit failed. Whether
// anything was saved is unknown (the hand commit may not have landed),
// but the outcome says ErrPartiallyCommitted alone, "some changes were
// saved", because the unknown hand commit counts as saved (committedBefore
// = handSaved): scopedhttp answers "partially saved" instead of "may have
// been saved; check before retrying". errors.go allows both sentinels
// together for this.
func TestReview3UnknownHandCommitThenAFailureIsUnknown(t *testing.T) {
	for _, refused := range []string{"unit's commit", "another hand commit"} {
		t.Run(refused, func(t *testing.T) {
			saved := 0
			hand := r3Unknown(&saved)
			other := scoped.New(func(context.Context) (*rh2Tx, error) {
				return &rh2Tx{saved: &saved, err: errors.New("refused"), lose: true}, nil
			}, scoped.WithTeardownErrorHook(nil))
			ctx, scope := scoped.Begin(context.Background())
			if _, err := hand.Current(ctx); err != nil {
				t.Fatal(err)
			}
			if err := hand.Commit(ctx); !errors.Is(err, scoped.ErrCommitUnknown) {
				t.Fatalf("hand commit = %v, want ErrCommitUnknown", err)
			}
			if _, err := other.Current(ctx); err != nil {
				t.Fatal(err)
			}
			if refused == "another hand commit" {
				if err := other.Commit(ctx); err == nil {
					t.Fatal("second hand commit succeeded")
				}
			}
			err := scope.Commit()
			if !errors.Is(err, scoped.ErrCommitUnknown) || errors.Is(err, scoped.ErrNotCommitted) {
				t.Errorf("Commit = %v, want ErrCommitUnknown (the hand commit may or may not have saved), not ErrNotCommitted", err)
			}
		})
	}
}

// Not defects: the rest of the outcome table after a hand commit of
// unknown outcome.
func TestReview3UnknownHandCommitOutcomes(t *testing.T) {
	t.Run("then Remove", func(t *testing.T) {
		saved := 0
		hand := r3Unknown(&saved)
		ctx, scope := scoped.Begin(context.Background())
		var ran testkit.Log
		_ = scoped.OnCommit(ctx, func(context.Context) { ran.Add("commit") })
		_ = scoped.OnRollback(ctx, func(context.Context) { ran.Add("rollback") })
		if _, err := hand.Current(ctx); err != nil {
			t.Fatal(err)
		}
		_ = hand.Commit(ctx)
		if !unit.SavedByHand(scope) {
			t.Error("SavedByHand = false after a hand commit of unknown outcome")
		}
		if err := scope.Remove(); err != nil {
			t.Errorf("Remove = %v", err)
		}
		if got := ran.List(); len(got) != 0 {
			t.Errorf("hooks %q ran, want none: the outcome is unknown", got)
		}
	})
	t.Run("then a close fails at the unit's commit", func(t *testing.T) {
		saved := 0
		hand := r3Unknown(&saved)
		type conn struct{}
		rest := scoped.New(func(context.Context) (*conn, error) { return &conn{}, nil }, scoped.WithTeardownErrorHook(nil),
			scoped.WithCommit(func(context.Context, *conn) error { saved++; return nil }),
			scoped.WithRollback(func(context.Context, *conn) error { return nil }),
			scoped.WithClose(func(context.Context, *conn) error { return errors.New("close failed") }))
		ctx, scope := scoped.Begin(context.Background())
		if _, err := hand.Current(ctx); err != nil {
			t.Fatal(err)
		}
		_ = hand.Commit(ctx)
		if _, err := rest.Current(ctx); err != nil {
			t.Fatal(err)
		}
		err := scope.Commit()
		if !errors.Is(err, scoped.ErrCommitUnknown) || errors.Is(err, scoped.ErrCommittedCloseFailed) || saved != 2 {
			t.Errorf("Commit = %v (saved %d), want ErrCommitUnknown alone and both saved", err, saved)
		}
	})
	t.Run("Run WithRetry, the unit's commit conflicts", func(t *testing.T) {
		saved, runs := 0, 0
		hand := r3Unknown(&saved)
		conflict := scoped.New(func(context.Context) (*rh2Tx, error) {
			return &rh2Tx{saved: &saved, err: errHandConflict, lose: true}, nil
		}, scoped.WithTeardownErrorHook(nil))
		err := scoped.Run(context.Background(), func(ctx context.Context) error {
			runs++
			if _, err := hand.Current(ctx); err != nil {
				return err
			}
			_ = hand.Commit(ctx)
			_, err := conflict.Current(ctx)
			return err
		}, scoped.WithRetry(3, func(err error) bool { return errors.Is(err, errHandConflict) }))
		if runs != 1 || saved != 1 || !errors.Is(err, errHandConflict) || errors.Is(err, scoped.ErrNotCommitted) {
			t.Errorf("Run = %v after %d runs, saved %d: want one run, the conflict, not ErrNotCommitted", err, runs, saved)
		}
	})
	t.Run("in a child", func(t *testing.T) {
		// A release whose error says unknown (a custom Nesting) was rolled
		// back to its savepoint: the root's commit knows its outcome.
		saved := 0
		txs := rh2Nested(&saved, errUnknownCommit)
		err := scoped.Run(context.Background(), func(ctx context.Context) error {
			if _, err := txs.Current(ctx); err != nil {
				return err
			}
			return scoped.Run(ctx, func(ctx context.Context) error {
				if _, err := txs.Current(ctx); err != nil {
					return err
				}
				_ = txs.Commit(ctx)
				return nil
			})
		})
		if err != nil || saved != 1 {
			t.Errorf("root Run = %v, saved %d: want nil and the root's commit", err, saved)
		}
	})
}

// Not defects (a476f6a): a keyed factory that watches its begin several
// times (scopedsql's retries) unwatches each; once the creation returned,
// the caller's context ending fires nothing (goleak in TestMain checks the
// AfterFunc goroutines); and a factory that does not watch sees a context
// never cancelled, with the caller's values.
func TestReview3KeyedWatchesAreUnwatched(t *testing.T) {
	type tenant struct{}
	var targets []*boundTarget
	var unwatched []error
	var done <-chan struct{}
	txs := scoped.New(func(fctx context.Context) (*fakeTx, error) {
		done = fctx.Done()
		w := fctx.(creation.Watcher)
		for range 3 {
			b := newBoundTarget()
			if !w.Watch(b) {
				return nil, errors.New("no watch for a caller that may be cancelled")
			}
			targets = append(targets, b)
			unwatched = append(unwatched, w.Unwatch())
		}
		return &fakeTx{name: "keyed", tag: fctx.Value(tenant{})}, nil
	}, scoped.WithTeardownErrorHook(nil), scoped.WithScopeFunc(scoped.ContextValue(tenant{})))
	defer txs.Close()
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), tenant{}, "t1"))
	tx, err := txs.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if done != nil || tx.tag != "t1" {
		t.Errorf("factory context: Done %v, tenant %v; want never done, the caller's values", done, tx.tag)
	}
	for i, b := range targets {
		select {
		case <-b.fired:
			t.Errorf("begin %d fired after it was unwatched", i)
		case <-time.After(10 * time.Millisecond):
		}
		if unwatched[i] != nil {
			t.Errorf("Unwatch %d = %v, want nil", i, unwatched[i])
		}
	}
}

// Not a defect: a keyed store closed while the factory ran ends the new
// session at once, once, with the caller's values and no cancellation,
// and Current says ErrClosed.
func TestReview3KeyedSessionEndedAtOnceWhenTheStoreClosed(t *testing.T) {
	type tenant struct{}
	running, closed := make(chan struct{}), make(chan struct{})
	var tx *fakeTx
	var endCtx context.Context
	txs := scoped.New(func(context.Context) (*fakeTx, error) {
		close(running)
		<-closed
		tx = &fakeTx{name: "keyed", onRollback: func(ctx context.Context) { endCtx = ctx }}
		return tx, nil
	}, scoped.WithTeardownErrorHook(nil), scoped.WithScopeFunc(scoped.ContextValue(tenant{})))
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), tenant{}, "t1"))
	defer cancel()
	errc := make(chan error, 1)
	go func() { _, err := txs.Current(ctx); errc <- err }()
	testkit.WaitFor(t, running, "the factory")
	if err := txs.Close(); err != nil {
		t.Fatal(err)
	}
	cancel() // the caller's end must not reach the session's end
	close(closed)
	if err := testkit.WaitFor(t, errc, "Current"); !errors.Is(err, scoped.ErrClosed) {
		t.Errorf("Current = %v, want ErrClosed", err)
	}
	if n := tx.rollbacks.Load(); n != 1 || tx.commits.Load() != 0 {
		t.Fatalf("rolled back %d times, committed %d: want one rollback", n, tx.commits.Load())
	}
	if endCtx.Err() != nil || endCtx.Value(tenant{}) != "t1" {
		t.Errorf("ended with Err %v, tenant %v; want no cancellation and the caller's values", endCtx.Err(), endCtx.Value(tenant{}))
	}
	if _, ok := endCtx.(creation.Watcher); ok {
		t.Error("the session was ended with its creation's context (a Watcher), not the caller's values alone")
	}
}
