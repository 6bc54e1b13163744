package scopedsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/go-scoped/scoped/shared/bound"
)

// Tx returns a factory for scoped.New that begins one transaction on db
// per scope, with opts (nil: the driver's defaults) under the unit's own
// options ([WithTxOptions]). opts is copied: later changes to it have no
// effect. [NewTx] also runs a setup after BEGIN.
//
//	txs := scoped.New(scopedsql.Tx(db, nil))
//
// The factory begins the transaction with the scope's context, but that
// context bounds only the beginning: waiting for a pooled connection,
// dialling and BEGIN give up when it is cancelled or its deadline passes,
// and the factory then returns the error. Once begun, the transaction is
// not tied to the context any more. It ends when the scope ends
// (scoped.Scope.Commit, scoped.Scope.Remove, or the scope's safety net
// when its context is cancelled), once, by the scope. See the package
// documentation for why and for what this does not avoid.
//
// Let the scope end the transaction; to commit before the scope ends, use
// scoped.ScopedSession.Commit. A transaction committed or rolled back by
// hand is not rolled back again by scoped.Scope.Remove, but
// scoped.Scope.Commit reports it as a failed commit (sql.ErrTxDone): it
// cannot tell a hand commit from a hand rollback.
//
// Used outside a scoped.ScopedSession, the returned transaction must be
// committed or rolled back by its caller even if ctx is cancelled.
func Tx(db *sql.DB, opts *sql.TxOptions) func(context.Context) (*sql.Tx, error) {
	if db == nil {
		panic("scopedsql: Tx with nil *sql.DB")
	}
	opts = cloneTxOptions(opts)
	return func(ctx context.Context) (*sql.Tx, error) { return beginUnit(ctx, db, opts) }
}

// Conn returns a factory for scoped.New that takes one connection from
// db's pool per scope and pins it for the scope, for session state that
// must stay on one connection: SET, advisory locks, temporary tables,
// several transactions in a row. Waiting for the connection gives up when
// the scope's context is done (for a session keyed with
// scoped.WithScopeFunc, when the context of the Current that creates it
// is). The connection goes back to the pool when
// the scope ends ([database/sql.Conn.Close]).
//
// Session state stays on the connection when it goes back to the pool:
// database/sql does not reset it. Undo what you set (RESET, unlock), use
// transaction-local forms (SET LOCAL, pg_advisory_xact_lock), or give
// scoped.WithClose a function that resets before it closes.
//
// scoped.New's default teardown for *sql.Conn never waits for what is
// still open on the connection (an unclosed *sql.Rows, a transaction begun
// on it), as Close would: it discards such a connection and says so with
// [ErrConnInUse] (see [NewConn]). The sessions of scoped.New(Conn(db)) are
// also ended by the scope's safety net when the scope's context is
// cancelled, which discards a connection whose query the cancellation is
// still stopping; [NewConn] leaves them to the scope's end, where the
// connection goes back to the pool. Prefer NewConn.
func Conn(db *sql.DB) func(context.Context) (*sql.Conn, error) {
	if db == nil {
		panic("scopedsql: Conn with nil *sql.DB")
	}
	return func(ctx context.Context) (*sql.Conn, error) { return takeConn(ctx, db) }
}

// takeConn takes a connection from db's pool, waiting no longer than ctx
// lives. The factory context of a keyed session ([scoped.WithScopeFunc])
// is the caller's values without its cancellation, as the session
// outlives the caller; it is a bound.Watcher that fires when the caller's
// context ends, and the wait gets a context (beginCtx) that ends then, so
// that a caller that left is not held until the pool frees a connection.
// A *sql.Conn is not tied to the context it was taken with: the bound ends
// with the wait.
func takeConn(ctx context.Context, db *sql.DB) (*sql.Conn, error) {
	if w, ok := ctx.(bound.Watcher); ok && ctx.Done() == nil && w.Watches() {
		b := &beginCtx{parent: ctx}
		if w.Watch(b) {
			c, err := db.Conn(b)
			if cause := w.Unwatch(); cause != nil {
				if err == nil {
					_ = c.Close() // fresh from the pool: nothing of the scope's on it
				}
				return nil, fmt.Errorf("scopedsql: get connection: %w", cause)
			}
			b.settle()
			return wrapConn(c, err)
		}
	}
	c, err := db.Conn(ctx)
	if (err == context.Canceled || err == context.DeadlineExceeded) && ctx.Err() != nil {
		// ctx.Err() itself, as database/sql returns it: say why, as begin does.
		err = context.Cause(ctx)
	}
	return wrapConn(c, err)
}

func wrapConn(c *sql.Conn, err error) (*sql.Conn, error) {
	if err != nil {
		return nil, fmt.Errorf("scopedsql: get connection: %w", err)
	}
	return c, nil
}

// begin starts a transaction whose context is cancelled only if ctx is
// done before BeginTx returns, and retries a BEGIN that failed on a dead
// connection (see retryBegin).
//
// database/sql derives the transaction's lifetime from the context given to
// BeginTx: its per-transaction goroutine (Tx.awaitDone) rolls back when
// that context is done, racing the scope's own teardown, and a driver may
// discard the connection (lib/pq marks it bad and opens a second connection
// to send a cancel request). Passing context.WithoutCancel(ctx) instead
// would leave waiting for a pooled connection unbounded. So BeginTx gets a
// context of its own (beginCtx), with ctx's values, that is done only if
// ctx is done while BeginTx runs. Inside a scope with a safety net, the
// net fires it (shared/bound), which saves a registration of its own.
func begin(ctx context.Context, db *sql.DB, opts *sql.TxOptions) (*sql.Tx, error) {
	if ctx.Err() != nil {
		return nil, fmt.Errorf("scopedsql: begin: %w", context.Cause(ctx))
	}
	tx, err := beginOnce(ctx, db, opts)
	for retries := 0; err != nil && connectionLost(err) && !timedOut(err) && ctx.Err() == nil &&
		retries < maxBeginRetries(db); retries++ {
		// Nothing was begun on the server: the connection was already
		// dead. database/sql has discarded it; take another.
		tx, err = beginOnce(ctx, db, opts)
	}
	return tx, err
}

// maxBeginRetries bounds begin's retries: one per connection open in the
// pool now, idle or in use (a storm that killed them all costs that many
// quick failures, each discarding the dead connection it found, and one in
// use now may be idle, and dead, by the next attempt) and one more, which
// then dials. database/sql's own retry covers only driver.ErrBadConn, which
// lib/pq does not report for a connection the server closed.
func maxBeginRetries(db *sql.DB) int { return db.Stats().OpenConnections + 1 }

func beginOnce(ctx context.Context, db *sql.DB, opts *sql.TxOptions) (*sql.Tx, error) {
	var b *beginCtx
	if w, ok := ctx.(bound.Watcher); ok && w.Watches() {
		// The factory of a scope with a safety net, or of a keyed session
		// (its context is the caller's without cancellation): the net, or
		// the caller's context, watches the begin, and nothing needs
		// registering here.
		b = &beginCtx{parent: ctx}
		if w.Watch(b) {
			tx, err := db.BeginTx(b, opts)
			if cause := w.Unwatch(); cause != nil {
				return abandoned(tx, err, cause)
			}
			b.settle()
			return wrapBegin(tx, err)
		}
	}
	if ctx.Done() == nil {
		// Never cancelled (context.Background, scoped.Detach): nothing to bound.
		return wrapBegin(db.BeginTx(ctx, opts))
	}
	if b == nil {
		b = &beginCtx{parent: ctx}
	}
	stop := context.AfterFunc(ctx, b.fire)
	tx, err := db.BeginTx(b, opts)
	if stop() {
		// ctx stayed alive throughout: b is never done, and the
		// transaction lives until it is committed or rolled back.
		b.settle()
		return wrapBegin(tx, err)
	}
	// b's error is ctx.Err(), not its cause.
	return abandoned(tx, err, context.Cause(ctx))
}

// abandoned is the end of a begin whose context was done while it ran:
// whatever BeginTx returned, database/sql is rolling it back. It says so
// now, with the cause.
func abandoned(tx *sql.Tx, err, cause error) (*sql.Tx, error) {
	switch {
	case err == nil:
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			return nil, fmt.Errorf("scopedsql: begin: %w: %w", cause, rerr)
		}
		err = fmt.Errorf("scopedsql: begin: %w", cause)
	case err == context.Canceled || err == context.DeadlineExceeded: // b.Err() itself, as database/sql returns it
		err = fmt.Errorf("scopedsql: begin: %w", cause)
	default:
		err = fmt.Errorf("scopedsql: begin: %w: %w", cause, err)
	}
	return nil, err
}

func wrapBegin(tx *sql.Tx, err error) (*sql.Tx, error) {
	if err != nil {
		return nil, fmt.Errorf("scopedsql: begin: %w", err)
	}
	return tx, nil
}

func cloneTxOptions(o *sql.TxOptions) *sql.TxOptions {
	if o == nil {
		return nil
	}
	c := *o
	return &c
}
