package scopedsql

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strconv"
	"time"
)

// StatementTimeout is a ready-made setup for [WithSetup], on PostgreSQL:
// if the unit's context has a deadline, it sets the transaction's
// statement_timeout to the time left until it (SET LOCAL, rounded up to a
// millisecond, at most PostgreSQL's largest, about 24.8 days), so that no
// statement of the unit outlives the request on the server either, even
// one whose cancellation never reaches it (a connection pool or proxy in
// the way, a client that died). Without a
// deadline it does nothing and sends nothing. A deadline already passed
// fails the setup with context.DeadlineExceeded.
//
//	txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(scopedsql.StatementTimeout))
//
// It costs one round trip after BEGIN. The timeout bounds each statement,
// not the transaction: a unit that runs many statements can outlive its
// deadline by the time of the last.
func StatementTimeout(ctx context.Context, tx *sql.Tx) error {
	q, err := statementTimeoutSQL(ctx)
	if err != nil || q == "" {
		return err
	}
	_, err = tx.ExecContext(ctx, q)
	return err
}

// statementTimeoutSQL is the SET LOCAL that bounds statements by ctx's
// deadline, or "" without one. The value is an integer formatted here,
// not an argument, so that the statement is a simple query: one round
// trip, and no prepared statement (which transaction pooling forbids).
func statementTimeoutSQL(ctx context.Context) (string, error) {
	d, ok := ctx.Deadline()
	if !ok {
		return "", nil
	}
	left := time.Until(d)
	if left <= 0 {
		return "", fmt.Errorf("scopedsql: statement_timeout: %w", context.DeadlineExceeded)
	}
	ms := (left + time.Millisecond - 1) / time.Millisecond
	// PostgreSQL takes at most 2^31-1 ms (about 24.8 days): a later
	// deadline is bounded by that rather than failing the setup.
	ms = min(ms, math.MaxInt32)
	return "SET LOCAL statement_timeout = " + strconv.FormatInt(int64(ms), 10), nil
}
