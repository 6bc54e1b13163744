package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
)

// Barrier holds the first n arrivals until all n have arrived, so that
// the first runs of n concurrent units all read before any writes: every
// one but one must then fail on the conflict, and be retried.
type Barrier struct {
	n       int32
	arrived atomic.Int32
	all     chan struct{}
}

// NewBarrier returns a barrier for n arrivals.
func NewBarrier(n int) *Barrier { return &Barrier{n: int32(n), all: make(chan struct{})} }

// Wait returns when all n have arrived, at once for arrivals after the
// n-th (the retries).
func (b *Barrier) Wait(ctx context.Context) error {
	switch k := b.arrived.Add(1); {
	case k > b.n:
		return nil
	case k == b.n:
		close(b.all)
	}
	select {
	case <-b.all:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(Bound): // a request that never arrived (no connection?) fails the test, not hangs it
		return errors.New("dbtest: barrier: not every request arrived")
	}
}

// Warm opens n connections of db before the test, so that a server short
// of connections fails it here rather than leaving requests at a barrier.
func Warm(t testing.TB, db *sql.DB, n int) {
	t.Helper()
	db.SetMaxOpenConns(n + 2)
	db.SetMaxIdleConns(n + 2)
	conns := make([]*sql.Conn, n)
	for i := range conns {
		c, err := db.Conn(Ctx(t))
		if err != nil {
			t.Fatalf("opening connection %d of %d: %v", i+1, n, err)
		}
		conns[i] = c
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

// Counter is one row (id 1, n 0) in a table of its own, which n
// concurrent units increment by reading then writing it, all reading
// before any writes (a [Barrier]): the contention that serialization
// failures (PostgreSQL) or deadlocks (MariaDB) come from.
type Counter struct {
	Table string
	Lock  string // appended to the read, such as " LOCK IN SHARE MODE"
	Param string // the bind parameter of the write: "$1" (the default) or "?"
	db    *sql.DB
	n     int
	b     *Barrier
	runs  atomic.Int32 // of Service's function
}

// CreateCounter creates the counter's table in db, dropped when t ends,
// for n concurrent units, with n connections of db opened ([Warm]).
func CreateCounter(t testing.TB, db *sql.DB, prefix string, n int) *Counter {
	t.Helper()
	Warm(t, db, n)
	c := &Counter{Table: Table(prefix), Param: "$1", db: db, n: n, b: NewBarrier(n)}
	ctx := Ctx(t)
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+c.Table+" (id INT PRIMARY KEY, n BIGINT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Bound)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP TABLE "+c.Table); err != nil {
			t.Errorf("drop %s: %v", c.Table, err)
		}
	})
	if _, err := db.ExecContext(ctx, "INSERT INTO "+c.Table+" (id, n) VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	return c
}

// CounterTx is what an increment runs through: a *sql.Tx.
type CounterTx interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Increment adds by to the counter through tx, waiting for the other
// units between the read and the write. Its errors are the driver's,
// unwrapped, for the caller's Retryable to judge.
func (c *Counter) Increment(ctx context.Context, tx CounterTx, by int64) error {
	var n int64
	if err := tx.QueryRowContext(ctx, "SELECT n FROM "+c.Table+" WHERE id = 1"+c.Lock).Scan(&n); err != nil {
		return err
	}
	if err := c.b.Wait(ctx); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, "UPDATE "+c.Table+" SET n = "+c.Param+" WHERE id = 1", n+by)
	return err
}

// Service is the service function: Increment in a unit of work of
// its own, through the transaction current gives it, retried up to three
// times when retryable — within a caller's unit, so that the caller's
// retries are the ones that count. Each call counts as a run for Check.
func (c *Counter) Service(current func(context.Context) (*sql.Tx, error), retryable func(error) bool) func(ctx context.Context, by int64) error {
	return func(ctx context.Context, by int64) error {
		c.runs.Add(1)
		return scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := current(ctx)
			if err != nil {
				return err
			}
			return c.Increment(ctx, tx, by)
		}, scoped.WithRetry(3, retryable))
	}
}

// Check asserts, after the n concurrent calls all succeeded, that the
// counter is want and that Service ran at least 2n-1 times: the barrier
// made every first run but one conflict, and each conflict ran again.
func (c *Counter) Check(t testing.TB, want int64) {
	t.Helper()
	var got int64
	if err := c.db.QueryRowContext(Ctx(t), "SELECT n FROM "+c.Table+" WHERE id = 1").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("counter = %d, want %d", got, want)
	}
	n, runs := c.n, int(c.runs.Load())
	if runs < 2*n-1 {
		t.Errorf("%d runs for %d calls: want at least %d, the conflicts retried", runs, n, 2*n-1)
	}
	t.Logf("%d calls, %d runs", n, runs)
}
