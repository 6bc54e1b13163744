package scopedsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/sqlconn"
)

// How a pinned connection's session is reset before it goes back to the
// pool (see NewConn).
type resetKind uint8

const (
	resetDiscard    resetKind = iota // close it: no reset the driver can send
	resetDiscardAll                  // PostgreSQL through lib/pq: DISCARD ALL
)

// resetOf picks the reset for db's driver. Only drivers known to take
// DISCARD ALL without losing their own state are reset in place; any
// other connection is discarded, which can leak nothing. pgx's stdlib
// caches prepared statements that DISCARD ALL would deallocate behind its
// back (scopedpgx.NewConn resets pgx connections); go-sql-driver/mysql
// sends no COM_RESET_CONNECTION, and MySQL and MariaDB have no statement
// that resets a session (variables, named locks, temporary tables).
func resetOf(db *sql.DB) resetKind {
	t := reflect.TypeOf(db.Driver())
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && t.PkgPath() == "github.com/lib/pq" {
		return resetDiscardAll
	}
	return resetDiscard
}

// resetClose is NewConn's teardown: it resets c's session, then closes c
// as [CloseConn] does. A connection with something still open on it is
// discarded by CloseConn, which ends its session too. A reset that fails
// discards the connection: its state is unknown.
func resetClose(kind resetKind) func(ctx context.Context, c *sql.Conn) error {
	return func(ctx context.Context, c *sql.Conn) error {
		if !sqlconn.Idle(c) {
			return sqlconn.Close(c)
		}
		if kind == resetDiscardAll {
			// DISCARD ALL is CLOSE ALL, SET SESSION AUTHORIZATION DEFAULT
			// (which resets SET ROLE too), RESET ALL, DEALLOCATE ALL,
			// UNLISTEN *, pg_advisory_unlock_all(), DISCARD PLANS, TEMP
			// and SEQUENCES: every session state PostgreSQL has. It cannot
			// run in a transaction block: a transaction left open (begun
			// with SQL, not BeginTx) makes it fail, and the connection is
			// discarded, which rolls the transaction back.
			_, err := c.ExecContext(ctx, "DISCARD ALL")
			if err == nil {
				return sqlconn.Close(c)
			}
			if errors.Is(err, sql.ErrConnDone) {
				return errClosedByHand(ctx, err)
			}
		}
		// What sqlconn.Discard does, keeping Raw's error: a connection
		// closed by hand went back to the pool unreset.
		if err := c.Raw(func(any) error { return driver.ErrBadConn }); errors.Is(err, sql.ErrConnDone) {
			return errClosedByHand(ctx, err)
		}
		return nil
	}
}

// errClosedByHand is NewConn's teardown error for a connection closed
// before the teardown, as sqlconn.Close reports it: closed by the scope's
// code, database/sql pooled it as the scope left it, before the reset.
//
// Unless the scope's context has ended: database/sql closed the connection
// itself, discarding it, when a query or transaction on it was cancelled,
// and reporting that would blame the user's code for a client that left.
func errClosedByHand(ctx context.Context, err error) error {
	if sqlconn.ScopeDone(ctx) {
		return nil
	}
	return fmt.Errorf("scopedsql: pinned connection closed before its scope ended, so NewConn could not reset "+
		"its session: closed by hand, it went back to the pool with its session state (SET, temporary tables, "+
		"locks) for its next user; do not Close a connection from NewConn, the scope's end does (database/sql "+
		"also closes it, discarding it, when a transaction begun on it is cancelled): %w", err)
}

// WithoutSessionReset declares that the scopes of a [NewConn] leave no
// session state on their connections (or that it does not matter): the
// connection goes back to the pool as it is, without DISCARD ALL, and a
// MySQL or MariaDB connection is pooled instead of closed. Pass it to
// NewConn. A transaction begun with SQL (START TRANSACTION) and left open
// is such state: on MySQL and MariaDB the next user's BeginTx would commit
// it.
func WithoutSessionReset() scoped.Option {
	return scoped.WithClose(func(_ context.Context, c *sql.Conn) error { return CloseConn(c) })
}
