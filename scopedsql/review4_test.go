package scopedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// Review of 022d203 on PostgreSQL: a keyed begin waiting for a pooled
// connection, its caller leaving, callers waiting for it (some alive, one
// that shares the creator's context and leaves with it). Not a defect:
// the leaving ones get their cause, the alive ones one transaction
// between them once a connection frees (one begin, single flight kept
// after the retry), and nothing stays open on the server.
func TestReview4KeyedCreatorAndOneWaiterLeaveTheOthersShareOneBegin(t *testing.T) {
	db, app := appDB(t)
	release := heldPool(t, db)
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithScopeFunc(scoped.ContextValue(r3Tenant{})),
		scoped.WithTeardownErrorHook(nil))
	closed := false
	defer func() {
		if !closed {
			_ = txs.Close()
		}
	}()
	base := context.WithValue(context.Background(), r3Tenant{}, "t1")
	cause := errors.New("review4: the creator left")
	creator, cancel := context.WithCancelCause(base)
	defer cancel(nil)
	creatorErr := make(chan error, 1)
	go func() { _, err := txs.Current(creator); creatorErr <- err }()
	testkit.Eventually(t, "the begin waiting for a connection", func() bool { return db.Stats().WaitCount > 0 })
	const alive = 4
	type got struct {
		tx  *sql.Tx
		err error
	}
	gots := make(chan got, alive)
	leaverErr := make(chan error, 1)
	for range alive {
		go func() { tx, err := txs.Current(base); gots <- got{tx, err} }()
	}
	go func() { _, err := txs.Current(creator); leaverErr <- err }()
	testkit.Eventually(t, "the callers waiting for the creation", func() bool {
		return testkit.Parked("github.com/go-scoped/scoped.lookup[")
	})
	cancel(cause)
	for name, ch := range map[string]chan error{"creator": creatorErr, "waiter sharing its context": leaverErr} {
		if err := testkit.WaitFor(t, ch, name); !errors.Is(err, cause) {
			t.Errorf("%s's Current = %v, want its context's cause", name, err)
		}
	}
	release()
	var first *sql.Tx
	for range alive {
		g := testkit.WaitFor(t, gots, "an alive caller")
		if g.err != nil || first != nil && g.tx != first {
			t.Errorf("alive caller's Current = %p, %v; want the one transaction", g.tx, g.err)
		}
		first = g.tx
	}
	var n int
	admin := openDB(t, dbtest.Postgres(t))
	if err := admin.QueryRowContext(dbtest.Ctx(t),
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle in transaction'", app).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d transactions open on the server, want 1", n)
	}
	closed = true
	if err := txs.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	wantNothingOpen(t, db, app)
}
