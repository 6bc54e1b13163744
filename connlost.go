package scoped

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
)

// A database/sql Commit that fails because the connection was lost may
// have reached the server and committed: its error must not say "nothing
// was saved". The default commit of *sql.Tx-like sessions wraps such
// errors in ErrCommitUnknown; scopedsql.VerifiedCommit resolves them.

// commitLost wraps err in ErrCommitUnknown when it says the connection was
// lost rather than that the server refused the commit, or that the server
// itself does not know the outcome: SQLSTATE 40003
// (statement_completion_unknown, CockroachDB's ambiguous result).
func commitLost(err error) error {
	if err != nil && (connectionLost(err) || completionUnknown(err)) {
		return fmt.Errorf("%w: %w", ErrCommitUnknown, err)
	}
	return err
}

// connectionLost reports whether err is a lost connection: driver.ErrBadConn,
// EOF, a network error (not the caller's context), a reset or broken pipe,
// PostgreSQL's SQLSTATE class 08 or 57P01..57P03 (through a SQLState()
// method, as lib/pq's and pgx's errors have), or go-sql-driver/mysql's
// "invalid connection", matched by its text since no driver is imported.
func connectionLost(err error) bool {
	for _, e := range leaves(err) {
		switch {
		case e == context.Canceled, e == context.DeadlineExceeded:
			continue
		case e == driver.ErrBadConn, e == io.EOF, e == io.ErrUnexpectedEOF,
			e == syscall.ECONNRESET, e == syscall.EPIPE, e == syscall.ECONNABORTED:
			return true
		}
		if _, ok := e.(net.Error); ok {
			return true
		}
		if st, ok := e.(interface{ SQLState() string }); ok {
			s := st.SQLState()
			if strings.HasPrefix(s, "08") || s == "57P01" || s == "57P02" || s == "57P03" {
				return true
			}
			continue
		}
		if e.Error() == "invalid connection" {
			return true
		}
	}
	return false
}

// completionUnknown reports whether err carries SQLSTATE 40003.
func completionUnknown(err error) bool {
	for _, e := range leaves(err) {
		if st, ok := e.(interface{ SQLState() string }); ok && st.SQLState() == "40003" {
			return true
		}
	}
	return false
}

// leaves returns err and every error it wraps, depth first.
func leaves(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		out = append(out, e)
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		default:
			walk(errors.Unwrap(e))
		}
	}
	walk(err)
	return out
}
