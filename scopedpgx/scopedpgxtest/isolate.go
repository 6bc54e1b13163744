package scopedpgxtest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedpgx"
)

// setupTimeout bounds acquiring the connection and beginning the outer
// transaction, and, at the end of the test, waiting for a statement still
// running and rolling back, so that an unreachable server or a stuck
// statement fails the test instead of hanging it.
const setupTimeout = 30 * time.Second

var (
	// ErrBroken is wrapped by every call after the test's transaction ended
	// before the test did: its connection was lost, or COMMIT or ROLLBACK
	// ran as SQL text. What was written before may have been committed.
	ErrBroken = errors.New("scopedpgxtest: the test's transaction has ended before the test")

	// ErrClosed is returned by calls made after the test has ended.
	ErrClosed = errors.New("scopedpgxtest: the isolated database is closed: its test has ended")
)

// DB is one test's isolated database: one connection inside a transaction
// that is rolled back when the test ends. It has the methods of a
// *pgxpool.Pool that code runs statements with (Exec, Query, QueryRow,
// SendBatch, CopyFrom, Begin, BeginTx, Ping), so that it can stand in for
// the pool where code takes an interface, such as [scopedpgx.NewDBTX], and
// [DB.NewTx] is the ScopedSession that stands in for [scopedpgx.NewTx].
//
// A DB is safe for concurrent use; its calls take turns on the one
// connection (see the package documentation).
type DB struct {
	c           *pgx.Conn
	beforeClose func(*pgx.Conn) // the pool's hook, run when the test's connection closes

	turn chan struct{} // holds a token while a call uses the connection
	slot chan struct{} // holds a token while a transaction of Begin is open
	done chan struct{} // closed when the test ends

	// Read and written with the turn held:
	open   []*tx // open transactions and their savepoint transactions, oldest first
	spNum  int64 // savepoints made, for their names
	broken error // why the test's transaction ended early; sticky

	holderMu sync.Mutex // guards holder
	holder   string     // where the transaction in the slot was begun

	waiting atomic.Int32 // transactions waiting for the slot (read by tests)
}

// Isolate returns an isolated database for t: it acquires one connection
// from pool, begins a transaction on it (the test's transaction), and
// serves every call of the returned DB inside it, where transactions are
// savepoints. When t ends (t.Cleanup) the test's transaction is rolled
// back and the connection closed, never given back: nothing the test did
// to its session (prepared statements, session advisory locks, plans
// cached against tables the test altered) reaches another test. Isolate
// calls t.Fatal if it cannot get a connection within 30 seconds.
//
// The connection leaves the pool as soon as the test's transaction has
// begun (pgxpool's Hijack), so that the pool can be closed before the test
// ends: pgx's usual defer pool.Close() runs before the cleanups, and
// pool.Close waits for every connection still acquired from the pool. The
// pool no longer counts it, and may open another in its place.
//
// Cleanups run last-registered first: register one that needs the locks
// the test's transaction holds (a DROP TABLE on pool of a table the test
// wrote to) before calling Isolate, or it waits for the test's rollback,
// which runs after it.
func Isolate(t testing.TB, pool *pgxpool.Pool) *DB {
	t.Helper()
	if pool == nil {
		panic("scopedpgxtest: Isolate with nil pool")
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	pc, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatalf("scopedpgxtest: Isolate: acquire a connection: %v", err)
	}
	if _, err := pc.Exec(ctx, "begin"); err != nil {
		pc.Release() // pgxpool destroys it if it is not idle
		t.Fatalf("scopedpgxtest: Isolate: begin the test's transaction: %v", err)
	}
	d := &DB{
		c: pc.Hijack(), beforeClose: pool.Config().BeforeClose,
		turn: make(chan struct{}, 1), slot: make(chan struct{}, 1), done: make(chan struct{}),
	}
	t.Cleanup(func() {
		broken, err := d.end()
		if broken != nil {
			t.Errorf("scopedpgxtest: %v; what the test wrote before may have been committed", broken)
		}
		if err != nil {
			t.Errorf("scopedpgxtest: ending the test's transaction: %v", err)
		}
	})
	return d
}

// NewTx returns a ScopedSession of transactions begun with [DB.Begin], one
// per scope, for the code under test in place of [scopedpgx.NewTx]:
// savepoints of the test's transaction, committed by
// [scoped.Scope.Commit] (RELEASE SAVEPOINT) and otherwise rolled back with
// [scopedpgx.Rollback] (ROLLBACK TO SAVEPOINT). Child scopes nest in them
// as in scopedpgx's. opts come after NewTx's own and may override them.
// There are no pgx.TxOptions: savepoints have no isolation level or
// access mode of their own.
func (d *DB) NewTx(opts ...scoped.Option) *scoped.ScopedSession[pgx.Tx] {
	all := make([]scoped.Option, 0, 1+len(opts))
	all = append(all, scoped.WithRollback(scopedpgx.Rollback))
	return scoped.New(d.Begin, append(all, opts...)...)
}

// end ends the test: later calls fail with ErrClosed, waiters give up, the
// test's transaction is rolled back and the connection closed. broken is
// why the test's transaction ended early, if it did.
func (d *DB) end() (broken, err error) {
	close(d.done)
	if !d.takeForEnd() {
		// A statement has run for setupTimeout: close the socket under it,
		// which makes it return, and ends the session (the server rolls
		// back).
		err = errors.New("a statement was still running when the test ended; its connection was closed")
		_ = d.c.PgConn().Conn().Close()
		if !d.takeForEnd() {
			// Still stuck: the connection, out of the pool since
			// Isolate, is left to the statement.
			return nil, errors.Join(err, errors.New("the statement did not return"))
		}
	}
	defer d.give()
	for _, t := range d.open {
		t.closed = true
	}
	d.open = nil
	broken = d.broken
	if broken == nil && err == nil && !d.c.IsClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		_, err = d.c.Exec(ctx, "rollback")
		cancel()
	}
	d.discard()
	return broken, err
}

// takeForEnd waits for the call in progress, if any, for at most
// setupTimeout, and takes the turn.
func (d *DB) takeForEnd() bool {
	timer := time.NewTimer(setupTimeout)
	defer timer.Stop()
	select {
	case d.turn <- struct{}{}:
		return true
	case <-timer.C:
		return false
	}
}

// discard closes the connection, as the pool would have: its BeforeClose
// hook first.
func (d *DB) discard() {
	if d.beforeClose != nil {
		d.beforeClose(d.c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	_ = d.c.Close(ctx)
}

// A DB serves the statements of a [scopedpgx.DBTX] outside a scope, as a
// pool does.
var _ scopedpgx.Querier = (*DB)(nil)
