package scopedsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"time"

	"github.com/go-scoped/scoped"
)

// NewConn returns a ScopedSession of connections pinned to their scope, as
// [Conn] takes them, whose teardown never waits for what the scope's code
// left open on its connection.
//
// [database/sql.Conn.Close] waits for every query still running on the
// connection, every *sql.Rows not closed and every *sql.Tx begun on it and
// not ended, and database/sql ends those only when the context of their
// query or BeginTx is done: with a request's context, when the client gives
// up; with context.Background, never. scoped.New(Conn(db)), which closes
// with Close, inherits that wait, and the scope's Remove blocks on it.
//
// NewConn's teardown instead looks, without waiting, whether anything is
// still open on the connection. If nothing is, the connection goes back to
// the pool as Close returns it. If something is, the scope's Remove returns
// at once with an error wrapping [ErrConnInUse] that says so, and the
// connection is discarded instead of pooled: its driver connection is
// closed, which ends its server session (the server rolls back a
// transaction left open and releases its locks), and the pool forgets it.
// database/sql itself lets go of the *sql.Conn only when the leftover
// ends (its context is done, or the code holding it closes it): until then
// it counts as in use in [database/sql.DBStats] and one goroutine of this
// package waits for it, never longer than the leftover lives.
//
// The look is exact for what was opened before the scope ended. A query
// started on the connection by another goroutine while the scope is ending
// (using a session after its scope ended) can slip in after the look; the
// connection then goes back to the pool once that query returns, as Close
// does.
//
// Session state (SET, advisory locks, temporary tables) is not reset: as
// with [Conn], undo it, use transaction-local forms, or give scoped.WithClose
// a function that resets and then calls [CloseConn].
//
// The sessions are created [scoped.WithoutSafetyNet]: the scope's safety
// net would end the connection on another goroutine while the query that
// the cancellation is stopping still holds it, and NewConn's teardown
// would then discard a healthy connection. End the scope with
// defer scope.Remove(), as always. opts come after NewConn's own and may
// override them.
func NewConn(db *sql.DB, opts ...scoped.Option) *scoped.ScopedSession[*sql.Conn] {
	all := make([]scoped.Option, 0, 2+len(opts))
	all = append(all, scoped.WithClose(func(_ context.Context, c *sql.Conn) error { return CloseConn(c) }),
		scoped.WithoutSafetyNet())
	return scoped.New(Conn(db), append(all, opts...)...)
}

// CloseConn closes c as [NewConn]'s teardown does: back to the pool if
// nothing is open on it, otherwise discarded, without waiting, with an
// error wrapping [ErrConnInUse]. A c closed before returns an error
// wrapping [database/sql.ErrConnDone], as Close does; database/sql closes
// a *sql.Conn itself when a transaction begun on it is rolled back because
// its context was cancelled.
func CloseConn(c *sql.Conn) error {
	free, known := idle(c)
	switch {
	case free:
		if err := c.Close(); err != nil {
			return fmt.Errorf("scopedsql: pinned connection closed before its scope ended "+
				"(by hand, or by database/sql when a transaction begun on it was cancelled): %w", err)
		}
		return nil
	case known:
		go discard(c)
		return errConnInUse
	}
	// database/sql's lock could not be found (see inuse.go): give Close a
	// short grace period, then let it finish in the background.
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	t := time.NewTimer(fallbackGrace)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("%w (after waiting %v, it goes back to the pool when that ends)", errConnInUse, fallbackGrace)
	}
}

// fallbackGrace is how long CloseConn waits for Close when it cannot look.
const fallbackGrace = 100 * time.Millisecond

var errConnInUse = fmt.Errorf("%w: an unclosed *sql.Rows, a *sql.Tx begun on it and not ended, "+
	"or a query still running: the connection is discarded, not pooled; "+
	"close Rows (defer rows.Close()) and end transactions before the scope ends", ErrConnInUse)

// discard closes c's driver connection and then c itself, reporting the
// driver connection bad so that database/sql closes it instead of pooling
// it. Raw waits only for a driver call running right now (a query in
// progress); the final release waits for the leftovers, which is why this
// runs on its own goroutine.
func discard(c *sql.Conn) {
	_ = c.Raw(func(dc any) error {
		if cl, ok := dc.(driver.Conn); ok {
			// Ends the server session now, rather than when the leftover's
			// context ends: its transaction is rolled back and its locks are
			// released. database/sql closes the driver connection again when
			// it discards it; lib/pq and go-sql-driver/mysql allow that.
			_ = cl.Close()
		}
		return driver.ErrBadConn
	})
}
