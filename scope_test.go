package scoped_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// A child scope joins its parent's session: a type that cannot nest
// (no Begin, not a database/sql transaction) is shared, and ended by its
// owner, never by the child.
func TestChildScopeSharesASessionThatCannotNest(t *testing.T) {
	var calls atomic.Int64
	rec := &testkit.Log{}
	r := txSession(rec, "A", &calls)
	ctx, parent := scoped.Begin(context.Background())
	defer parent.Remove()
	childCtx, child := scoped.Begin(ctx)
	if s, _ := scoped.FromContext(childCtx); s != child || s == parent {
		t.Fatal("FromContext of a child context is not the child scope")
	}
	c := mustCurrent(t, r, childCtx) // created lazily, by the parent
	if p := mustCurrent(t, r, ctx); p != c || calls.Load() != 1 {
		t.Fatalf("child and parent got different sessions (%d factory calls)", calls.Load())
	}
	if err := child.Commit(); err != nil {
		t.Fatal(err)
	}
	if c.rollbacks.Load()+c.commits.Load() != 0 {
		t.Fatal("the child ended its parent's session")
	}
	if err := parent.Err(); err != nil {
		t.Fatalf("child end ended the parent: %v", err)
	}
	if _, err := r.Current(childCtx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current in the ended child = %v, want ErrScopeClosed", err)
	}
	if err := parent.Remove(); err != nil || c.rollbacks.Load() != 1 {
		t.Fatalf("parent Remove: %v, rollbacks %d, want 1", err, c.rollbacks.Load())
	}
}

func TestParentRemoveEndsOpenChildrenFirst(t *testing.T) {
	baseline := scoped.LiveScopes()
	rec := &testkit.Log{}
	txs := nestSession(rec)
	ctx, parent := scoped.Begin(context.Background())
	c1, child1 := scoped.Begin(ctx)
	_, child2 := scoped.Begin(ctx)
	grandCtx, grandchild := scoped.Begin(c1)
	mustCurrent(t, txs, grandCtx) // tx in parent, savepoints in child1 and grandchild
	if n := scoped.LiveScopes() - baseline; n != 4 {
		t.Fatalf("LiveScopes grew by %d, want 4", n)
	}

	if err := parent.Remove(); err != nil {
		t.Fatal(err)
	}
	want := []string{"begin tx", "begin tx/1", "begin tx/1/2", "rollback tx/1/2", "rollback tx/1", "rollback tx"}
	if ev := rec.List(); !equal(ev, want) {
		t.Fatalf("events %v, want %v: children end before their parent", ev, want)
	}
	for _, s := range []*scoped.Scope{child1, child2, grandchild} {
		if !errors.Is(s.Err(), scoped.ErrScopeClosed) {
			t.Fatal("a child scope is still open after its parent was removed")
		}
	}
	if _, err := txs.Current(c1); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current in a child of a removed parent = %v, want ErrScopeClosed", err)
	}
	if err := child1.Remove(); err != nil {
		t.Fatalf("Remove of a child already ended by its parent = %v", err)
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d, want %d", n, baseline)
	}
	if len(rec.List()) != len(want) {
		t.Fatalf("a session ended twice: %v", rec.List())
	}
}

func TestBeginUnderEndedParentIsBornEnded(t *testing.T) {
	baseline := scoped.LiveScopes()
	var calls atomic.Int64
	r := txSession(nil, "A", &calls)
	ctx, parent := scoped.Begin(context.Background())
	if err := parent.Remove(); err != nil {
		t.Fatal(err)
	}
	childCtx, child := scoped.Begin(ctx)
	if !errors.Is(child.Err(), scoped.ErrScopeClosed) {
		t.Fatalf("child of an ended scope: Err = %v, want ErrScopeClosed", child.Err())
	}
	if _, err := r.Current(childCtx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current in a child of an ended scope = %v, want ErrScopeClosed", err)
	}
	if n := calls.Load(); n != 0 {
		t.Fatal("factory ran in a scope born ended")
	}
	if err := child.Remove(); err != nil {
		t.Fatal(err)
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d, want %d", n, baseline)
	}
}

// A child whose own context is cancelled (a per-step timeout) rolls back
// its part of the parent's transaction at once; the parent stays.
func TestCancelledChildScopeEndsAloneParentStays(t *testing.T) {
	rec := &testkit.Log{}
	txs := nestSession(rec)
	ctx, parent := scoped.Begin(context.Background())
	defer parent.Remove()
	p := mustCurrent(t, txs, ctx)

	narrow, cancel := context.WithCancel(ctx)
	childCtx, child := scoped.Begin(narrow)
	c := mustCurrent(t, txs, childCtx)
	cancel()
	testkit.Eventually(t, "child safety net", func() bool { return c.rollbacks.Load() == 1 })
	if err := child.Remove(); err != nil {
		t.Fatal(err)
	}
	if parent.Err() != nil || p.rollbacks.Load() != 0 {
		t.Fatal("cancelling a child's context ended its parent")
	}
	if got := mustCurrent(t, txs, ctx); got != p {
		t.Fatal("parent lost its session")
	}
}

func TestDetachKeepsValuesNotCancellation(t *testing.T) {
	baseline := scoped.LiveScopes()
	var calls atomic.Int64
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{id: calls.Add(1), tag: ctx.Value(valueKey{})}, nil
	}, scoped.WithTeardownErrorHook(nil))
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), valueKey{}, "req-7"))
	reqCtx, reqScope := scoped.Begin(parent)
	reqTx := mustCurrent(t, r, reqCtx)

	bgCtx, bgScope := scoped.Detach(reqCtx)
	if s, _ := scoped.FromContext(bgCtx); s != bgScope || s == reqScope {
		t.Fatal("the detached context does not carry the detached scope")
	}
	bgTx := mustCurrent(t, r, bgCtx)
	if bgTx == reqTx {
		t.Fatal("a detached scope shares the request's session")
	}
	if bgTx.tag != "req-7" {
		t.Fatalf("detached factory saw value %v, want the request's", bgTx.tag)
	}

	// The request ends: cancelled, then removed.
	cancel()
	if err := reqScope.Remove(); err != nil {
		t.Fatal(err)
	}
	if reqTx.rollbacks.Load() != 1 {
		t.Fatal("request session not rolled back")
	}
	if err := bgCtx.Err(); err != nil {
		t.Fatalf("the detached context was cancelled with the request: %v", err)
	}
	if err := bgScope.Err(); err != nil || bgTx.rollbacks.Load() != 0 {
		t.Fatalf("the detached scope ended with the request (Err %v, rollbacks %d)", err, bgTx.rollbacks.Load())
	}
	if got := mustCurrent(t, r, bgCtx); got != bgTx {
		t.Fatal("detached scope lost its session")
	}
	if n := scoped.LiveScopes() - baseline; n != 1 {
		t.Fatalf("LiveScopes grew by %d with the detached scope open, want 1", n)
	}

	// It must be removed by its owner.
	if err := bgScope.Remove(); err != nil {
		t.Fatal(err)
	}
	if bgTx.rollbacks.Load() != 1 {
		t.Fatal("detached session not rolled back by its Remove")
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d, want %d", n, baseline)
	}
}

func TestScopeLenCountsReadySessions(t *testing.T) {
	var calls atomic.Int64
	a := txSession(nil, "A", &calls)
	b := txSession(nil, "B", &calls)
	ctx, scope := scoped.Begin(context.Background())
	check := func(when string, want int) {
		t.Helper()
		if n := scope.Len(); n != want {
			t.Fatalf("%s: Len = %d, want %d", when, n, want)
		}
	}
	check("fresh", 0)
	mustCurrent(t, a, ctx)
	check("one session", 1)
	mustCurrent(t, b, ctx)
	mustCurrent(t, a, ctx)
	check("two sessions", 2)
	if err := a.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	check("after ScopedSession.Remove", 1)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	check("after Remove", 0)
}
