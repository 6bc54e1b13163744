package scopedsql

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/go-scoped/scoped/internal/connlost"
)

// The core's default commit of a *sql.Tx asks these rules too, so that a
// commit that lost its connection, or that the server could not complete
// knowingly, is reported as scoped.ErrCommitUnknown.
func init() {
	connlost.CommitUnknown = func(err error) bool { return connectionLost(err) || completionUnknown(err) }
}

// completionUnknown reports whether err carries SQLSTATE 40003
// (statement_completion_unknown, CockroachDB's ambiguous result): the
// server does not know whether the statement took effect.
func completionUnknown(err error) bool {
	return walk(err, func(e error) bool {
		st, ok := e.(interface{ SQLState() string })
		return ok && st.SQLState() == "40003"
	})
}

// connectionLost reports whether err says the connection to the server
// was lost (or was already dead when it was used), as opposed to an error
// the server answered with. A statement that failed so may or may not
// have reached the server; a BEGIN that failed so began nothing that
// survives, since the server ends the transaction of a session it lost.
//
// It recognises driver.ErrBadConn; io.EOF and io.ErrUnexpectedEOF; any
// net.Error and ECONNRESET, EPIPE, ECONNREFUSED, ECONNABORTED (lib/pq
// reports a pooled connection the server closed this way); PostgreSQL's
// SQLSTATE class 08 (connection exception) and 57P01..57P03
// (admin_shutdown, crash_shutdown, cannot_connect_now, what a backend
// terminated by pg_terminate_backend or a restarting server sends); and
// go-sql-driver/mysql's ErrInvalidConn ("invalid connection"), matched by
// its text, since the package is not imported (see [Retryable]).
func connectionLost(err error) bool {
	return walk(err, func(e error) bool {
		switch {
		case e == context.Canceled, e == context.DeadlineExceeded:
			return false // a net.Error too, but the caller's, not the connection's
		case e == driver.ErrBadConn, e == io.EOF, e == io.ErrUnexpectedEOF,
			e == syscall.ECONNRESET, e == syscall.EPIPE, e == syscall.ECONNREFUSED, e == syscall.ECONNABORTED:
			return true
		}
		if _, ok := e.(net.Error); ok {
			return true
		}
		if st, ok := e.(interface{ SQLState() string }); ok {
			s := st.SQLState()
			return strings.HasPrefix(s, "08") || s == "57P01" || s == "57P02" || s == "57P03"
		}
		return e.Error() == "invalid connection"
	})
}

// timedOut reports whether err is a network timeout (a dial or read that
// gave up after a driver's timeout): retrying it would wait as long again.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
