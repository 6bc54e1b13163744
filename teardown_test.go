package scoped_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// fakeConnTx both ends a transaction and closes a connection, to show the
// order within one session.
type fakeConnTx struct {
	name string
	rec  *testkit.Log
}

func (c *fakeConnTx) Commit(context.Context) error   { c.rec.Add("commit %s", c.name); return nil }
func (c *fakeConnTx) Rollback(context.Context) error { c.rec.Add("rollback %s", c.name); return nil }
func (c *fakeConnTx) Close() error                   { c.rec.Add("close %s", c.name); return nil }

func TestRemoveEndsSessionsNewestFirst(t *testing.T) {
	rec := &testkit.Log{}
	var calls atomic.Int64
	a := txSession(rec, "A", &calls)
	b := connSession(rec, "B", nil)
	c := scoped.New(func(ctx context.Context) (*fakeConnTx, error) {
		return &fakeConnTx{name: "C", rec: rec}, nil
	})
	d := txSession(rec, "D", &calls)
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)
	mustCurrent(t, c, ctx)
	mustCurrent(t, d, ctx)
	mustCurrent(t, a, ctx) // using a session again does not reorder it

	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	want := []string{"rollback D", "rollback C", "close C", "close B", "rollback A"}
	if ev := rec.List(); !equal(ev, want) {
		t.Fatalf("teardown order %v, want %v (LIFO, rollback before close)", ev, want)
	}
}

func TestScopeCommitCommitsInCreationOrder(t *testing.T) {
	rec := &testkit.Log{}
	var calls atomic.Int64
	a := txSession(rec, "A", &calls)
	b := connSession(rec, "B", nil) // not committable: only closed
	c := txSession(rec, "C", &calls)
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)
	mustCurrent(t, c, ctx)

	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	want := []string{"commit A", "commit C", "close B"}
	if ev := rec.List(); !equal(ev, want) {
		t.Fatalf("events %v, want %v", ev, want)
	}
	if _, err := a.Current(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current after Commit = %v, want ErrScopeClosed", err)
	}
	if err := scope.Remove(); err != nil {
		t.Fatalf("Remove after Commit = %v", err)
	}
	if ev := rec.List(); !equal(ev, want) {
		t.Fatalf("Remove after Commit ended something again: %v", ev)
	}
}

func TestScopeCommitStopsAtFirstFailureAndRollsBackTheRest(t *testing.T) {
	errB := errors.New("serialization failure")
	rec := &testkit.Log{}
	sink := &testkit.Errors{}
	newTx := func(name string, commitErr error) *scoped.ScopedSession[*fakeTx] {
		return scoped.New(func(ctx context.Context) (*fakeTx, error) {
			return &fakeTx{name: name, rec: rec, commitErr: commitErr}, nil
		}, scoped.WithName(name), scoped.WithTeardownErrorHook(sink.Hook))
	}
	a, b, c, d := newTx("A", nil), newTx("B", errB), newTx("C", nil), newTx("D", nil)
	ctx, scope := scoped.Begin(context.Background())
	txA := mustCurrent(t, a, ctx)
	txB := mustCurrent(t, b, ctx)
	txC := mustCurrent(t, c, ctx)
	txD := mustCurrent(t, d, ctx)

	err := scope.Commit()
	if !errors.Is(err, errB) {
		t.Fatalf("Commit = %v, want an error wrapping %v", err, errB)
	}
	if !strings.Contains(err.Error(), "B") {
		t.Fatalf("Commit error %q does not name the failing session B", err)
	}
	if txA.commits.Load() != 1 || txA.rollbacks.Load() != 0 {
		t.Fatalf("A: commits %d, rollbacks %d; want committed", txA.commits.Load(), txA.rollbacks.Load())
	}
	if txB.commits.Load() != 1 {
		t.Fatalf("B: commit tried %d times, want 1", txB.commits.Load())
	}
	for _, tx := range []*fakeTx{txC, txD} {
		if tx.commits.Load() != 0 || tx.rollbacks.Load() != 1 {
			t.Fatalf("%s after an earlier commit failed: commits %d, rollbacks %d; want rolled back only",
				tx.name, tx.commits.Load(), tx.rollbacks.Load())
		}
	}
	var commits []string
	for _, e := range rec.List() {
		if strings.HasPrefix(e, "commit ") {
			commits = append(commits, e)
		}
	}
	if !equal(commits, []string{"commit A", "commit B"}) {
		t.Fatalf("commits %v, want A then B", commits)
	}
	if errs := sink.List(); len(errs) != 1 || !errors.Is(errs[0], errB) {
		t.Fatalf("hook got %v, want the failed commit", errs)
	}
	if st := b.Stats(); st.Failed != 1 || st.Committed != 0 || st.Live != 0 {
		t.Fatalf("B Stats = %+v, want Failed 1, Live 0", st)
	}
	if st := c.Stats(); st.RolledBack != 1 || st.Live != 0 {
		t.Fatalf("C Stats = %+v, want RolledBack 1, Live 0", st)
	}
}

func TestFailingTeardownDoesNotStopTheOthers(t *testing.T) {
	errA := errors.New("close A failed")
	errB := errors.New("rollback B failed")
	rec := &testkit.Log{}
	sink := &testkit.Errors{}
	a := scoped.New(func(ctx context.Context) (*fakeConn, error) {
		return &fakeConn{name: "A", rec: rec, closeErr: errA}, nil
	}, scoped.WithName("A"), scoped.WithTeardownErrorHook(sink.Hook))
	b := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{name: "B", rec: rec, rollbackErr: errB}, nil
	}, scoped.WithName("B"), scoped.WithTeardownErrorHook(sink.Hook))
	c := connSession(rec, "C", nil)
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)
	mustCurrent(t, c, ctx)

	err := scope.Remove()
	if !errors.Is(err, errA) || !errors.Is(err, errB) {
		t.Fatalf("Remove = %v, want both %v and %v joined", err, errA, errB)
	}
	if want := []string{"close C", "rollback B", "close A"}; !equal(rec.List(), want) {
		t.Fatalf("events %v, want %v: every session ends once, failures or not", rec.List(), want)
	}
	if a.Has(ctx) || b.Has(ctx) || c.Has(ctx) {
		t.Fatal("a session stayed registered after a failing teardown")
	}
	if _, err := a.Current(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current after failed teardown = %v, want ErrScopeClosed", err)
	}
	if _, err := b.Current(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current after failed teardown = %v, want ErrScopeClosed", err)
	}
	errs := sink.List()
	if len(errs) != 2 || !errors.Is(errors.Join(errs...), errA) || !errors.Is(errors.Join(errs...), errB) {
		t.Fatalf("hook got %v, want the two teardown errors", errs)
	}
	if err := scope.Remove(); err != nil {
		t.Fatalf("second Remove = %v, want nil", err)
	}
	if n := len(rec.List()); n != 3 {
		t.Fatalf("second Remove ended sessions again: %v", rec.List())
	}
}

func TestTeardownPanicBecomesErrorAndOthersStillEnd(t *testing.T) {
	rec := &testkit.Log{}
	sink := &testkit.Errors{}
	var calls atomic.Int64
	a := txSession(rec, "A", &calls)
	b := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{name: "B", rec: rec, rollbackPanic: "kaboom"}, nil
	}, scoped.WithName("B"), scoped.WithTeardownErrorHook(sink.Hook))
	c := txSession(rec, "C", &calls)
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)
	mustCurrent(t, c, ctx)

	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("Remove panicked: %v", p)
			}
		}()
		err = scope.Remove()
	}()
	if err == nil || !strings.Contains(err.Error(), "panicked") || !strings.Contains(err.Error(), "kaboom") {
		t.Fatalf("Remove = %v, want an error reporting the panic", err)
	}
	if want := []string{"rollback C", "rollback B", "rollback A"}; !equal(rec.List(), want) {
		t.Fatalf("events %v, want %v", rec.List(), want)
	}
	if errs := sink.List(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "kaboom") {
		t.Fatalf("hook got %v, want the panic", errs)
	}
	if st := b.Stats(); st.Failed != 1 || st.Live != 0 {
		t.Fatalf("Stats = %+v, want Failed 1, Live 0", st)
	}
	if scoped.LiveScopes() < 0 {
		t.Fatal("LiveScopes negative")
	}
}

func TestPanickingErrorHookDoesNotStopTeardown(t *testing.T) {
	baseline := scoped.LiveScopes()
	rec := &testkit.Log{}
	var calls atomic.Int64
	a := txSession(rec, "A", &calls) // older: ended after B
	b := scoped.New(func(ctx context.Context) (*fakeConn, error) {
		return &fakeConn{name: "B", rec: rec, closeErr: errors.New("close failed")}, nil
	}, scoped.WithTeardownErrorHook(func(context.Context, error) { panic("hook exploded") }))
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)

	// Whether Remove reports the hook's panic as an error or re-panics
	// once everything has ended is the implementation's choice; stopping
	// half way is not.
	_ = recoverString(func() { _ = scope.Remove() })
	if want := []string{"close B", "rollback A"}; !equal(rec.List(), want) {
		t.Fatalf("events %v, want %v: a panicking hook stopped the teardown of the other sessions", rec.List(), want)
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d after Remove, want %d", n, baseline)
	}
	again := make(chan error, 1)
	go func() { again <- scope.Remove() }()
	if err := testkit.WaitFor(t, again, "second Remove to return"); err != nil {
		t.Fatalf("second Remove = %v", err)
	}
}

func TestTeardownContextIsNotCancelled(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), valueKey{}, "req-2"))
	var mu sync.Mutex
	var errs []error
	var values []any
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{onRollback: func(ctx context.Context) {
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, ctx.Err())
			values = append(values, ctx.Value(valueKey{}))
		}}, nil
	}, scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(parent)
	tx := mustCurrent(t, r, ctx)
	cancel() // the client went away
	// Whoever ends the scope (Remove or the safety net), Remove returns
	// once it has ended.
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if tx.rollbacks.Load() != 1 || len(errs) != 1 {
		t.Fatalf("rolled back %d times, want 1", tx.rollbacks.Load())
	}
	if errs[0] != nil {
		t.Fatalf("Rollback got a context that was already done: %v", errs[0])
	}
	if values[0] != "req-2" {
		t.Fatalf("Rollback context value = %v, want the scope's", values[0])
	}
}

// A close that fails after a successful commit is reported, but the
// session's changes are committed: it must not stop the commits of the
// sessions after it (that would half-commit the scope).
func TestScopeCommitGoesOnPastACloseErrorAfterACommit(t *testing.T) {
	rec := &testkit.Log{}
	var calls atomic.Int64
	errClose := errors.New("close failed")
	a := scoped.New(func(ctx context.Context) (*fakeConnTx, error) {
		return &fakeConnTx{name: "A", rec: rec}, nil
	}, scoped.WithName("A"), scoped.WithTeardownErrorHook(nil),
		scoped.WithClose(func(_ context.Context, c *fakeConnTx) error {
			c.rec.Add("close %s", c.name)
			return errClose
		}))
	b := txSession(rec, "B", &calls)
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)

	err := scope.Commit()
	if !errors.Is(err, errClose) || !strings.Contains(err.Error(), "close A") {
		t.Fatalf("Commit = %v, want the close error of A", err)
	}
	want := []string{"commit A", "close A", "commit B"}
	if ev := rec.List(); !equal(ev, want) {
		t.Fatalf("events %v, want %v", ev, want)
	}
}

// Order is the order of creation, not of the first call: a session whose
// factory uses another session of the scope (a transaction begun on the
// scope's pinned connection) is created after it, so it ends before it and
// commits after it. It used to end after it, which made (*sql.Conn).Close
// wait forever for the transaction still open on it.
func TestSessionBuiltOnAnotherEndsFirstAndCommitsLast(t *testing.T) {
	for _, commit := range []bool{false, true} {
		t.Run(map[bool]string{false: "Remove", true: "Commit"}[commit], func(t *testing.T) {
			rec := &testkit.Log{}
			// conn is a pinned connection (Close only), lock a transaction
			// begun on it, tx another transaction that uses lock.
			conns := scoped.New(func(ctx context.Context) (*fakeConn, error) {
				rec.Add("create conn")
				return &fakeConn{name: "conn", rec: rec}, nil
			})
			locks := scoped.New(func(ctx context.Context) (*fakeTx, error) {
				if _, err := conns.Current(ctx); err != nil {
					return nil, err
				}
				rec.Add("create lock")
				return &fakeTx{name: "lock", rec: rec}, nil
			})
			txs := scoped.New(func(ctx context.Context) (*fakeTx, error) {
				if _, err := locks.Current(ctx); err != nil {
					return nil, err
				}
				rec.Add("create tx")
				return &fakeTx{name: "tx", rec: rec}, nil
			})
			ctx, scope := scoped.Begin(context.Background())
			mustCurrent(t, txs, ctx) // first call: tx; first created: conn
			end := scope.Remove
			want := []string{"create conn", "create lock", "create tx", "rollback tx", "rollback lock", "close conn"}
			if commit {
				end = scope.Commit
				want = []string{"create conn", "create lock", "create tx", "commit lock", "commit tx", "close conn"}
			}
			if err := end(); err != nil {
				t.Fatal(err)
			}
			if got := rec.List(); !equal(got, want) {
				t.Fatalf("events\n got %v\nwant %v", got, want)
			}
		})
	}
}
