package scopedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// Review of a476f6a: a keyed session's begin is bounded by its caller's
// context, on PostgreSQL.

type r3Tenant struct{}

// Two callers of one key: the first runs the begin, waiting for a pooled
// connection, the second waits for that creation (lookup's single
// flight). The first leaves: its begin is cut, and the second, whose
// context is alive, gets the first's cancellation as its own Current's
// error (the creation failed for everyone waiting), where before a476f6a
// it got the session once a connection freed. A handler reading
// errors.Is(err, context.Canceled) takes it for its own client leaving.
func TestReview3KeyedWaiterIsNotFailedByTheCreatorLeaving(t *testing.T) {
	db, app := appDB(t)
	release := heldPool(t, db)
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithScopeFunc(scoped.ContextValue(r3Tenant{})),
		scoped.WithTeardownErrorHook(nil))
	defer func() { _ = txs.Close(); wantNothingOpen(t, db, app) }()
	base := context.WithValue(context.Background(), r3Tenant{}, "t1")
	cause := errors.New("review3: the creator left")
	creator, cancel := context.WithCancelCause(base)
	defer cancel(nil)
	errA, errB := make(chan error, 1), make(chan error, 1)
	go func() { _, err := txs.Current(creator); errA <- err }()
	testkit.Eventually(t, "the begin waiting for a connection", func() bool { return db.Stats().WaitCount > 0 })
	go func() { _, err := txs.Current(base); errB <- err }()
	testkit.Eventually(t, "the second caller waiting for the creation", func() bool {
		return testkit.Parked("github.com/go-scoped/scoped.lookup[")
	})
	cancel(cause)
	if err := testkit.WaitFor(t, errA, "the creator's Current"); !errors.Is(err, cause) {
		t.Errorf("creator's Current = %v, want its context's cause", err)
	}
	release()
	select {
	case err := <-errB:
		if err != nil {
			t.Errorf("second caller's Current = %v, want its session: its own context is alive", err)
		}
	case <-time.After(hangDetector):
		t.Fatal("the second caller still waits after a connection freed")
	}
}

// A keyed factory that asks another keyed ScopedSession for its session
// (a tenant's handle built on the tenant's transaction) passes its own
// factory context, which is the caller's without cancellation: the inner
// keyedCreation's caller is never done (Watches is false) and its begin
// waited for a pooled connection after the caller left, the wait a476f6a
// bounds one level up; the inner creation is now bounded by the outer
// one's caller.
func TestReview3KeyedBeginInsideAKeyedFactoryIsBounded(t *testing.T) {
	db, app := appDB(t)
	release := heldPool(t, db)
	key := scoped.WithScopeFunc(scoped.ContextValue(r3Tenant{}))
	txs := scoped.New(scopedsql.Tx(db, nil), key, scoped.WithTeardownErrorHook(nil))
	type handle struct{ tx *sql.Tx }
	handles := scoped.New(func(ctx context.Context) (*handle, error) {
		tx, err := txs.Current(ctx)
		return &handle{tx}, err
	}, key, scoped.WithTeardownErrorHook(nil), scoped.WithClose(func(context.Context, *handle) error { return nil }))
	defer func() { release(); _ = handles.Close(); _ = txs.Close(); wantNothingOpen(t, db, app) }()
	cause := errors.New("review3: client left")
	ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), r3Tenant{}, "t1"))
	defer cancel(nil)
	errc := make(chan error, 1)
	go func() { _, err := handles.Current(ctx); errc <- err }()
	testkit.Eventually(t, "the begin waiting for a connection", func() bool { return db.Stats().WaitCount > 0 })
	cancel(cause)
	select {
	case err := <-errc:
		if !errors.Is(err, cause) {
			t.Errorf("Current = %v, want the context's cause", err)
		}
	case <-time.After(hangDetector):
		release()
		<-errc
		t.Fatal("the inner keyed begin still waits for a connection after the caller's context was cancelled")
	}
}

// Not a defect: a caller already gone when its keyed begin starts (begin's
// own check reads the factory context, never cancelled) is still cut
// short, and a begin that ends normally leaves nothing registered on the
// caller's context: cancelling it later ends nothing (goleak in TestMain).
func TestReview3KeyedBeginCallerGoneOrLater(t *testing.T) {
	db, app := appDB(t)
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithScopeFunc(scoped.ContextValue(r3Tenant{})),
		scoped.WithTeardownErrorHook(nil))
	defer func() { _ = txs.Close(); wantNothingOpen(t, db, app) }()
	cause := errors.New("review3: gone")
	gone, cancelGone := context.WithCancelCause(context.WithValue(context.Background(), r3Tenant{}, "gone"))
	cancelGone(cause)
	if _, err := txs.Current(gone); !errors.Is(err, cause) {
		t.Errorf("Current from a caller already gone = %v, want its cause", err)
	}
	live, cancelLive := context.WithCancel(context.WithValue(context.Background(), r3Tenant{}, "live"))
	tx, err := txs.Current(live)
	if err != nil {
		t.Fatal(err)
	}
	cancelLive()
	var one int
	if err := tx.QueryRowContext(context.Background(), "SELECT 1").Scan(&one); err != nil {
		t.Errorf("the keyed transaction after its creator's context ended: %v", err)
	}
	if err := txs.Commit(context.WithValue(context.Background(), r3Tenant{}, "live")); err != nil {
		t.Errorf("Commit = %v", err)
	}
}
