package scopedpgx

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// connectionLost reports whether err, returned by a call on c, says that
// the connection failed rather than that the server refused the
// statement: a network error, a connection pgx has closed, or one of the
// server's own connection errors (class 08, or 57P01..57P03: the backend
// was terminated, the server is shutting down or starting). A context
// that ended is not a lost connection.
func connectionLost(ctx context.Context, c *pgx.Conn, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fatalCode(pgErr.Code)
	}
	return c.IsClosed() || pgconn.SafeToRetry(err)
}

func fatalCode(code string) bool {
	return strings.HasPrefix(code, "08") || code == "57P01" || code == "57P02" || code == "57P03"
}

// outcomeUnknown reports whether a COMMIT that returned err may have
// committed all the same: its answer was lost (the connection failed or
// the call's context ended). A server error other than a connection error
// is an answer. pgconn.SafeToRetry is no proof that COMMIT was not sent:
// a connection reset while pgx flushes COMMIT comes back as "conn closed",
// marked safe to retry, after the server received it.
func outcomeUnknown(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fatalCode(pgErr.Code)
	}
	return true
}

// beginError is the error of a BEGIN that failed, which surfaces at the
// transaction's first statement and every call after it.
type beginError struct{ err error }

func (e *beginError) Error() string { return "scopedpgx: BEGIN failed: " + e.err.Error() }
func (e *beginError) Unwrap() error { return e.err }
