package scoped_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// hookLog returns a hook that records name in rec.
func hookLog(rec *testkit.Log, name string) func(context.Context) {
	return func(context.Context) { rec.Add("hook %s", name) }
}

// register registers an OnCommit and an OnRollback hook named after
// level in ctx's unit.
func register(t *testing.T, ctx context.Context, rec *testkit.Log, level string) {
	t.Helper()
	if err := scoped.OnCommit(ctx, hookLog(rec, "commit "+level)); err != nil {
		t.Fatal(err)
	}
	if err := scoped.OnRollback(ctx, hookLog(rec, "rollback "+level)); err != nil {
		t.Fatal(err)
	}
}

func hooksOf(rec *testkit.Log) []string {
	var out []string
	for _, e := range rec.List() {
		if strings.HasPrefix(e, "hook ") {
			out = append(out, strings.TrimPrefix(e, "hook "))
		}
	}
	return out
}

// captureLog sends slog's default logger to a buffer until t ends.
func captureLog(t *testing.T) *syncBuffer {
	t.Helper()
	buf := &syncBuffer{}
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return buf
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestHooksOutsideScope(t *testing.T) {
	if err := scoped.OnCommit(context.Background(), func(context.Context) {}); !errors.Is(err, scoped.ErrNoScope) {
		t.Errorf("OnCommit outside a scope = %v, want ErrNoScope", err)
	}
	if err := scoped.OnRollback(context.Background(), func(context.Context) {}); !errors.Is(err, scoped.ErrNoScope) {
		t.Errorf("OnRollback outside a scope = %v, want ErrNoScope", err)
	}
	ctx, scope := scoped.Begin(context.Background())
	_ = scope.Remove()
	if err := scoped.OnCommit(ctx, func(context.Context) {}); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Errorf("OnCommit in an ended scope = %v, want ErrScopeClosed", err)
	}
}

// OnCommit hooks run after the commit, in registration order, with the
// unit's values but neither its cancellation nor its scope; OnRollback
// hooks of a committed unit do not run.
func TestOnCommitRunsAfterTheCommitInOrder(t *testing.T) {
	rec := &testkit.Log{}
	txs := nestSession(rec)
	type key struct{}
	base, cancel := context.WithTimeout(context.WithValue(context.Background(), key{}, "v"), time.Hour)
	defer cancel()
	var hookCtx context.Context
	err := scoped.Run(base, func(ctx context.Context) error {
		if _, err := txs.Current(ctx); err != nil {
			return err
		}
		register(t, ctx, rec, "1")
		if err := scoped.OnCommit(ctx, func(ctx context.Context) { hookCtx = ctx }); err != nil {
			return err
		}
		register(t, ctx, rec, "2")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"begin tx", "commit tx", "hook commit 1", "hook commit 2"}
	if got := rec.List(); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if hookCtx.Value(key{}) != "v" {
		t.Error("the hook's context lost the unit's values")
	}
	if _, ok := hookCtx.Deadline(); ok || hookCtx.Done() != nil {
		t.Error("the hook's context keeps the unit's deadline or cancellation")
	}
	if _, ok := scoped.FromContext(hookCtx); ok {
		t.Error("the hook's context carries a scope")
	}
	if _, err := txs.Current(hookCtx); !errors.Is(err, scoped.ErrNoScope) {
		t.Errorf("Current in a hook = %v, want ErrNoScope", err)
	}
}

// A unit that fails, is removed, or whose commit fails runs its
// OnRollback hooks, never its OnCommit hooks.
func TestOnRollbackRunsWhenTheUnitIsUndone(t *testing.T) {
	for _, c := range []struct {
		name string
		end  func(ctx context.Context, scope *scoped.Scope) error
	}{
		{"remove", func(_ context.Context, s *scoped.Scope) error { return s.Remove() }},
		{"commit fails", func(ctx context.Context, s *scoped.Scope) error { return s.Commit() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &testkit.Log{}
			txs := scoped.New(func(context.Context) (*nestTx, error) {
				return &nestTx{name: "tx", rec: rec, commitErr: errors.New("refused")}, nil
			}, scoped.WithTeardownErrorHook(nil))
			ctx, scope := scoped.Begin(context.Background())
			if _, err := txs.Current(ctx); err != nil {
				t.Fatal(err)
			}
			register(t, ctx, rec, "1")
			register(t, ctx, rec, "2")
			err := c.end(ctx, scope)
			if c.name == "commit fails" && !errors.Is(err, scoped.ErrNotCommitted) {
				t.Fatalf("Commit = %v, want ErrNotCommitted", err)
			}
			if got, want := hooksOf(rec), []string{"rollback 1", "rollback 2"}; !slices.Equal(got, want) {
				t.Errorf("hooks %q, want %q", got, want)
			}
		})
	}
}

// Nesting three deep: a child's hooks move to its parent when its
// savepoint is released; its OnCommit hooks are dropped and its
// OnRollback hooks run when it rolls back, or when an enclosing unit
// does after it was released.
func TestHooksFollowSavepointsThreeDeep(t *testing.T) {
	errFail := errors.New("fail")
	cases := []struct {
		name                  string
		rootErr, childErr, gc error
		want                  []string
	}{
		{"all commit", nil, nil, nil,
			[]string{"commit root", "commit child", "commit grandchild", "commit root-after"}},
		{"grandchild rolls back", nil, nil, errFail,
			[]string{"rollback grandchild", "commit root", "commit child", "commit root-after"}},
		{"child rolls back after the grandchild was released", nil, errFail, nil,
			[]string{"rollback child", "rollback grandchild", "commit root", "commit root-after"}},
		{"root rolls back after both were released", errFail, nil, nil,
			[]string{"rollback root", "rollback child", "rollback grandchild", "rollback root-after"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &testkit.Log{}
			txs := nestSession(rec)
			err := scoped.Run(context.Background(), func(ctx context.Context) error {
				if _, err := txs.Current(ctx); err != nil {
					return err
				}
				register(t, ctx, rec, "root")
				_ = scoped.Run(ctx, func(ctx context.Context) error {
					if _, err := txs.Current(ctx); err != nil {
						return err
					}
					register(t, ctx, rec, "child")
					_ = scoped.Run(ctx, func(ctx context.Context) error {
						if _, err := txs.Current(ctx); err != nil {
							return err
						}
						register(t, ctx, rec, "grandchild")
						return c.gc
					})
					return c.childErr
				})
				register(t, ctx, rec, "root-after")
				return c.rootErr
			})
			if !errors.Is(err, c.rootErr) {
				t.Fatalf("Run = %v", err)
			}
			if got := hooksOf(rec); !slices.Equal(got, c.want) {
				t.Errorf("hooks %q, want %q\nevents %q", got, c.want, rec.List())
			}
		})
	}
}

// A panicking hook is reported, stops no other hook, and changes no
// result.
func TestPanickingHookStopsNothing(t *testing.T) {
	logged := captureLog(t)
	rec := &testkit.Log{}
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		_ = scoped.OnCommit(ctx, func(context.Context) { panic("boom") })
		_ = scoped.OnCommit(ctx, hookLog(rec, "after"))
		return nil
	})
	if err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got := hooksOf(rec); !slices.Equal(got, []string{"after"}) {
		t.Errorf("hooks %q, want the one after the panic", got)
	}
	if !strings.Contains(logged.String(), "unit hook panicked") || !strings.Contains(logged.String(), "boom") {
		t.Errorf("log %q does not report the panic", logged.String())
	}
}

// blockTx is a session whose commit waits until release is closed.
type blockTx struct{ release chan struct{} }

// When the outcome is unknown (a commit past its teardown bound) neither
// kind of hook runs, and that is reported.
func TestHooksDoNotRunWhenTheOutcomeIsUnknown(t *testing.T) {
	logged := captureLog(t)
	release := make(chan struct{})
	committed := make(chan struct{})
	txs := scoped.New(func(context.Context) (*blockTx, error) { return &blockTx{release}, nil },
		scoped.WithCommit(func(_ context.Context, tx *blockTx) error { <-tx.release; close(committed); return nil }),
		scoped.WithRollback(func(context.Context, *blockTx) error { return nil }),
		scoped.WithTeardownTimeout(time.Millisecond), scoped.WithTeardownErrorHook(nil))
	rec := &testkit.Log{}
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		if _, err := txs.Current(ctx); err != nil {
			return err
		}
		register(t, ctx, rec, "1")
		return nil
	})
	close(release)
	testkit.WaitFor(t, committed, "the late commit")
	if !errors.Is(err, scoped.ErrCommitUnknown) {
		t.Fatalf("Run = %v, want ErrCommitUnknown", err)
	}
	if got := hooksOf(rec); len(got) != 0 {
		t.Errorf("hooks %q ran for an unknown outcome", got)
	}
	if !strings.Contains(logged.String(), "unit hooks not run") {
		t.Errorf("log %q does not report the hooks not run", logged.String())
	}
}

// A unit whose first session committed and second did not saved part of
// its work: neither kind runs (documented choice), and that is reported.
func TestHooksDoNotRunWhenPartiallyCommitted(t *testing.T) {
	logged := captureLog(t)
	rec := &testkit.Log{}
	ok := nestSession(rec)
	bad := scoped.New(func(context.Context) (*nestTx, error) {
		return &nestTx{name: "bad", rec: rec, commitErr: errors.New("refused")}, nil
	}, scoped.WithTeardownErrorHook(nil))
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		if _, err := ok.Current(ctx); err != nil {
			return err
		}
		if _, err := bad.Current(ctx); err != nil {
			return err
		}
		register(t, ctx, rec, "1")
		return nil
	})
	if !errors.Is(err, scoped.ErrPartiallyCommitted) {
		t.Fatalf("Run = %v, want ErrPartiallyCommitted", err)
	}
	if got := hooksOf(rec); len(got) != 0 {
		t.Errorf("hooks %q ran for a partial commit", got)
	}
	if !strings.Contains(logged.String(), "unit hooks not run") {
		t.Errorf("log %q does not report the hooks not run", logged.String())
	}
}

// A retried Run drops the OnCommit hooks of its failed attempts and runs
// their OnRollback hooks; only the last attempt's OnCommit hooks run.
func TestRetriedRunDropsFailedAttemptsOnCommitHooks(t *testing.T) {
	errConflict := errors.New("conflict")
	rec := &testkit.Log{}
	txs := nestSession(rec)
	attempt := 0
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		attempt++
		if _, err := txs.Current(ctx); err != nil {
			return err
		}
		register(t, ctx, rec, string(rune('0'+attempt)))
		if attempt < 3 {
			return errConflict
		}
		return nil
	}, scoped.WithRetry(3, func(err error) bool { return errors.Is(err, errConflict) }))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hooksOf(rec), []string{"rollback 1", "rollback 2", "commit 3"}; !slices.Equal(got, want) {
		t.Errorf("hooks %q, want %q", got, want)
	}
}

// A scope the safety net ends (its context was cancelled) runs its
// OnRollback hooks, on the net's goroutine.
func TestSafetyNetRunsOnRollbackHooks(t *testing.T) {
	rec := &testkit.Log{}
	txs := nestSession(rec)
	parent, cancel := context.WithCancel(context.Background())
	ctx, scope := scoped.Begin(parent)
	defer scope.Remove()
	if _, err := txs.Current(ctx); err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	_ = scoped.OnCommit(ctx, hookLog(rec, "commit"))
	_ = scoped.OnRollback(ctx, func(context.Context) { close(ran) })
	cancel()
	testkit.WaitFor(t, ran, "the OnRollback hook run by the safety net")
	if got := hooksOf(rec); len(got) != 0 {
		t.Errorf("hooks %q ran", got)
	}
}

// Hooks registered concurrently in one unit all run, once.
func TestHooksRegisteredConcurrently(t *testing.T) {
	const n = 64
	var mu sync.Mutex
	ran := map[int]int{}
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := scoped.OnCommit(ctx, func(context.Context) { mu.Lock(); ran[i]++; mu.Unlock() }); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ran) != n {
		t.Fatalf("%d hooks ran, want %d", len(ran), n)
	}
	for i, c := range ran {
		if c != 1 {
			t.Errorf("hook %d ran %d times", i, c)
		}
	}
}

// A hook may run a unit of work of its own: its context has no scope, so
// Run begins a root.
func TestHookMayRunAUnitOfItsOwn(t *testing.T) {
	rec := &testkit.Log{}
	txs := nestSession(rec)
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		return scoped.OnCommit(ctx, func(ctx context.Context) {
			err := scoped.Run(ctx, func(ctx context.Context) error {
				_, err := txs.Current(ctx)
				return err
			})
			rec.Add("inner %v", err)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rec.List(), []string{"begin tx", "commit tx", "inner <nil>"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// A side effect only for saved work: the cache entry is dropped once the
// order is committed; the nested unit that failed had its OnCommit hook
// dropped and its OnRollback hook run when it was undone.
func ExampleOnCommit() {
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		// ... insert the order in the unit's transaction ...
		_ = scoped.OnCommit(ctx, func(context.Context) { fmt.Println("order saved: drop customer 7's cached orders") })
		_ = scoped.Run(ctx, func(ctx context.Context) error {
			// ... reserve the gift wrapping, which fails ...
			_ = scoped.OnCommit(ctx, func(context.Context) { fmt.Println("never: the nested unit rolled back") })
			_ = scoped.OnRollback(ctx, func(context.Context) { fmt.Println("gift wrapping undone: release the hold") })
			return errors.New("out of gift wrap")
		})
		return nil // the order stands without the wrapping
	})
	fmt.Println("Run:", err)
	// Output:
	// gift wrapping undone: release the hold
	// order saved: drop customer 7's cached orders
	// Run: <nil>
}

// A session committed by hand (ScopedSession.Commit, scopedhttp's Manual
// pattern) saved the unit's work: a unit then removed with nothing left
// to commit runs its OnCommit hooks, never OnRollback, which would
// compensate for saved work; one that rolls back another session then
// saved only part of its work and runs neither; one then committed runs
// its OnCommit hooks.
func TestHandCommittedSessionSettlesNoRollbackHook(t *testing.T) {
	for _, c := range []struct {
		name        string
		commitScope bool
		other       bool // a second session, rolled back by the Remove
		want        []string
	}{
		{"removed", false, false, []string{"commit"}},
		{"removed with another session", false, true, nil},
		{"committed", true, false, []string{"commit"}},
	} {
		commitScope := c.commitScope
		var calls atomic.Int64
		txs := txSession(nil, "tx", &calls)
		ctx, scope := scoped.Begin(context.Background())
		mustCurrent(t, txs, ctx)
		if c.other {
			mustCurrent(t, txSession(nil, "other", &calls), ctx)
		}
		var ran []string
		if err := scoped.OnCommit(ctx, func(context.Context) { ran = append(ran, "commit") }); err != nil {
			t.Fatal(err)
		}
		if err := scoped.OnRollback(ctx, func(context.Context) { ran = append(ran, "rollback") }); err != nil {
			t.Fatal(err)
		}
		if err := txs.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		var err error
		if commitScope {
			err = scope.Commit()
		} else {
			err = scope.Remove()
		}
		if err != nil || !slices.Equal(ran, c.want) {
			t.Fatalf("%s: %v, hooks %v; want %v", c.name, err, ran, c.want)
		}
	}
}
