// Package sqlconn ends a *sql.Conn without waiting for what was left open
// on it. It is the teardown of every pinned connection: scoped's default
// for *sql.Conn sessions and scopedsql's NewConn and CloseConn.
//
// [database/sql.Conn.Close] waits for every query still running on the
// connection, every *sql.Rows not closed and every *sql.Tx begun on it and
// not ended, and database/sql ends those only when the context of their
// query or BeginTx is done: with a request's context, when the request
// ends, which for a handler is after its scope ended; with
// context.Background, never. A scope's end must not wait for that.
package sqlconn

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"
)

// ScopeDone reports whether the context of the scope a teardown's ctx
// belongs to has ended (the client went away, the deadline passed): then
// what the cancellation left on a pinned connection, or a connection
// database/sql closed because of it, is no fault of the user's code.
// Package scoped sets it; the teardown context carries no cancellation.
var ScopeDone = func(context.Context) bool { return false }

// ErrInUse is scopedsql.ErrConnInUse: the sentinel is scopedsql's, which
// documents it, and lives here so that scoped's default teardown for
// *sql.Conn, which may not import scopedsql, returns the same one.
var ErrInUse = errors.New("scopedsql: pinned connection still in use as its scope ended")

var errInUse = fmt.Errorf("%w: an unclosed *sql.Rows, a *sql.Tx begun on it and not ended, "+
	"or a query still running: the connection is discarded, not pooled; "+
	"close Rows (defer rows.Close()) and end transactions before the scope ends", ErrInUse)

// Close closes c without waiting: back to the pool if nothing is open on
// it, otherwise discarded, with an error wrapping [ErrInUse]. Discarding
// closes c's driver connection, which ends its server session (the server
// rolls back a transaction left open and releases its locks), and the
// pool forgets it; database/sql lets go of the *sql.Conn itself only when
// the leftover ends (its context is done, or the code holding it closes
// it), and one goroutine waits for that, never longer than the leftover
// lives. A c closed before returns an error wrapping
// [database/sql.ErrConnDone], as Close does.
//
// The look is exact for what was opened before Close was called. A query
// started on c by another goroutine meanwhile can slip in after the look;
// c then goes back to the pool once that query returns, as Close does.
func Close(c *sql.Conn) error {
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
		return errInUse
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
		return fmt.Errorf("%w (after waiting %v, it goes back to the pool when that ends)", errInUse, fallbackGrace)
	}
}

// fallbackGrace is how long Close waits for c.Close when it cannot look.
const fallbackGrace = 100 * time.Millisecond

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
