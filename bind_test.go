package scoped_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

func TestBindFindsEachSessionTypeInItsOwnSlot(t *testing.T) {
	var calls atomic.Int64
	txs := txSession(nil, "tx", &calls)
	conns := connSession(nil, "conn", nil)
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	ctx = scoped.Bind(scoped.Bind(ctx, txs), conns)

	tx, err := scoped.Current[*fakeTx](ctx)
	if err != nil || tx != mustCurrent(t, txs, ctx) {
		t.Fatalf("Current[*fakeTx] = %p, %v; want the bound ScopedSession's session", tx, err)
	}
	conn, err := scoped.Current[*fakeConn](ctx)
	if err != nil || conn != mustCurrent(t, conns, ctx) {
		t.Fatalf("Current[*fakeConn] = %p, %v; want the bound ScopedSession's session", conn, err)
	}
	if r, ok := scoped.Bound[*fakeTx](ctx); !ok || r != txs {
		t.Fatal("Bound[*fakeTx] does not return the bound ScopedSession")
	}

	_, err = scoped.Current[*gormDB](ctx)
	if !errors.Is(err, scoped.ErrNotBound) || !strings.Contains(err.Error(), "gormDB") {
		t.Fatalf("Current of an unbound type = %v, want ErrNotBound naming the type", err)
	}
	if _, ok := scoped.Bound[*gormDB](ctx); ok {
		t.Fatal("Bound found an unbound type")
	}
}

func TestBindOfSameTypeReplacesForDerivedContext(t *testing.T) {
	var calls1, calls2 atomic.Int64
	r1 := txSession(nil, "one", &calls1)
	r2 := txSession(nil, "two", &calls2)
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	ctx1 := scoped.Bind(ctx, r1)
	ctx2 := scoped.Bind(ctx1, r2)
	if tx, _ := scoped.Current[*fakeTx](ctx2); tx == nil || tx.name != "two" {
		t.Fatalf("Current in the derived context = %v, want the second binding's", tx)
	}
	if tx, _ := scoped.Current[*fakeTx](ctx1); tx == nil || tx.name != "one" {
		t.Fatalf("Current in the outer context = %v, want the first binding's", tx)
	}
}

func TestScopedSessionsOfSameTypeNeverShareASession(t *testing.T) {
	rec := &testkit.Log{}
	var calls1, calls2 atomic.Int64
	users := txSession(rec, "users", &calls1)
	billing := txSession(rec, "billing", &calls2)
	ctx, scope := scoped.Begin(context.Background())
	u := mustCurrent(t, users, ctx)
	b := mustCurrent(t, billing, ctx)
	if u == b || u.name != "users" || b.name != "billing" {
		t.Fatalf("two ScopedSessions of one type: users got %q, billing got %q", u.name, b.name)
	}
	if mustCurrent(t, users, ctx) != u || mustCurrent(t, billing, ctx) != b {
		t.Fatal("a ScopedSession found the other's session")
	}
	if calls1.Load() != 1 || calls2.Load() != 1 {
		t.Fatalf("factories called %d and %d times, want 1 and 1", calls1.Load(), calls2.Load())
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"rollback billing", "rollback users"}; !equal(rec.List(), want) {
		t.Fatalf("events %v, want %v", rec.List(), want)
	}
}
