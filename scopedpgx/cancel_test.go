package scopedpgx

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
)

// The failure reported against other transaction managers: the request
// context is cancelled while a query runs, and the connection stays
// acquired, or a rollback races the query. Under scoped.Begin the
// cancellation fires the core's safety net on another goroutine while the
// query is in flight, and the guard makes that rollback wait for the query
// to return; under BeginWithoutSafetyNet (as scopedhttp begins) the
// rollback is Remove's, after the query. Either way, once Remove returns
// the connection is back in the pool or closed. Repeated to give the race
// detector many interleavings.
func TestTxCancelledMidQueryReleasesConnection(t *testing.T) {
	for _, begin := range beginners {
		t.Run(begin.name, func(t *testing.T) { testTxCancelledMidQuery(t, begin.begin) })
	}
}

// beginners are the two ways to begin a scope.
var beginners = []struct {
	name  string
	begin func(context.Context) (context.Context, *scoped.Scope)
}{
	{"Begin", scoped.Begin},
	{"BeginWithoutSafetyNet", scoped.BeginWithoutSafetyNet},
}

func testTxCancelledMidQuery(t *testing.T, begin func(context.Context) (context.Context, *scoped.Scope)) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgx_cancel")
	var hooked []error
	r := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(func(_ context.Context, err error) {
		hooked = append(hooked, err)
	}))
	const rounds = 10
	for i := range rounds {
		base, cancel := context.WithCancel(context.Background())
		ctx, scope := begin(base)
		defer scope.Remove()
		tx, err := r.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
		pid := tx.Conn().PgConn().PID()
		go func() {
			awaitActive(t, pid, "SELECT pg_sleep(10)")
			cancel()
		}()
		if _, err := tx.Exec(ctx, "SELECT pg_sleep(10)"); !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: query error %v, want context.Canceled", i, err)
		}
		if err := scope.Remove(); err != nil {
			t.Fatalf("round %d: Remove: %v", i, err)
		}
		if n := pool.Stat().AcquiredConns(); n != 0 {
			t.Fatalf("round %d: %d connections still acquired", i, n)
		}
		if _, err := tx.Exec(context.Background(), "SELECT 1"); !errors.Is(err, pgx.ErrTxClosed) {
			t.Fatalf("round %d: use after the scope ended: %v, want pgx.ErrTxClosed", i, err)
		}
	}
	var one int
	if err := pool.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("pool after cancellations: %v, %d", err, one)
	}
	if got := ids(t, pool, table); len(got) != 0 {
		t.Errorf("rows %v of cancelled transactions were committed", got)
	}
	want := scoped.Stats{Created: rounds, RolledBack: rounds}
	if got := r.Stats(); got != want || len(hooked) != 0 {
		t.Errorf("stats %+v, hook saw %v; want %+v and no error", got, hooked, want)
	}
}

// The scope's context bounds acquiring the connection and BEGIN: a scope
// past its deadline does not queue for a connection forever.
func TestTxBeginRespectsScopeDeadline(t *testing.T) {
	pool := newPool(t, 1)
	held, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	r := NewTx(pool, pgx.TxOptions{})
	base, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ctx, scope := scoped.Begin(base)
	defer scope.Remove()
	// The caller's context has no deadline; the scope's does, and wins.
	_, err = r.Current(context.WithoutCancel(ctx))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Current with the pool exhausted past the deadline: %v, want DeadlineExceeded", err)
	}
	if n := pool.Stat().CanceledAcquireCount(); n != 1 {
		t.Errorf("%d cancelled acquires, want 1", n)
	}
	if got := r.Stats(); got.Live != 0 || got.Failed != 1 {
		t.Errorf("stats %+v, want one failed creation and nothing live", got)
	}
}

// Unlike database/sql, pgx does not end a transaction when the context it
// was begun or used with ends: a query with a short-lived context of its
// own leaves the scope's transaction usable.
func TestTxOutlivesQueryContexts(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgx_life")
	r := NewTx(pool, pgx.TxOptions{})
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	qctx, cancel := context.WithCancel(ctx)
	tx, err := r.Current(qctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(qctx, "INSERT INTO "+table+" (id) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, pool, table); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("rows %v, want [1 2]", got)
	}
}

// A scope whose context is cancelled while its handler is between calls
// is rolled back by the safety net; the handler's next call fails cleanly,
// and never reaches the connection, which may already serve another scope.
func TestTxUseAfterSafetyNetFailsWithoutTouchingConnection(t *testing.T) {
	pool := newPool(t, 1) // one connection: the next scope gets the same one
	table := newTable(t, pool, "pgx_after")
	r := NewTx(pool, pgx.TxOptions{})
	base, cancel := context.WithCancel(context.Background())
	ctx, scope := scoped.Begin(base)
	defer scope.Remove()
	stale, err := r.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := scope.Remove(); err != nil { // waits for the safety net, if it started first
		t.Fatal(err)
	}

	ctx2, scope2 := scoped.Begin(context.Background())
	defer scope2.Remove()
	tx2, err := r.Current(ctx2)
	if err != nil {
		t.Fatal(err)
	}
	if stale.Conn() != tx2.Conn() {
		t.Fatal("test needs the next scope on the same connection")
	}
	rs, err := stale.Query(context.Background(), "SELECT 1")
	for _, err := range []error{
		func() error { _, err := stale.Exec(ctx2, "INSERT INTO "+table+" (id) VALUES (1)"); return err }(),
		err, rs.Err(),
		stale.QueryRow(ctx2, "SELECT 1").Scan(new(int)),
		stale.SendBatch(ctx2, &pgx.Batch{}).Close(),
		stale.Commit(ctx2),
	} {
		if !errors.Is(err, pgx.ErrTxClosed) {
			t.Errorf("stale transaction: %v, want pgx.ErrTxClosed", err)
		}
	}
	if rs.Next() {
		t.Error("stale rows have a row")
	}
	if _, err := tx2.Exec(ctx2, "INSERT INTO "+table+" (id) VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if err := scope2.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, pool, table); !slices.Equal(got, []int{2}) {
		t.Errorf("rows %v, want [2]", got)
	}
}

// A pgx.Tx is not safe for concurrent use. Two goroutines calling it at
// once get an error from the guard instead of a data race in pgx.
func TestTxConcurrentCallIsRefused(t *testing.T) {
	pool := newPool(t, 2)
	r := NewTx(pool, pgx.TxOptions{})
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	tx, err := r.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	pid := tx.Conn().PgConn().PID() // before the call: Conn is not guarded
	go func() {
		_, err := tx.Exec(qctx, "SELECT pg_sleep(10)")
		done <- err
	}()
	awaitActive(t, pid, "SELECT pg_sleep(10)")
	if _, err := tx.Exec(ctx, "SELECT 1"); !errors.Is(err, errBusy) {
		t.Errorf("concurrent Exec: %v, want errBusy", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled query: %v", err)
	}
	if err := scope.Remove(); err != nil {
		t.Errorf("Remove: %v", err)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired", n)
	}
}
