package scopedpgx

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// StatementTimeout is a ready-made setup for [WithSetup]: if the unit's
// context has a deadline, it queues SET LOCAL statement_timeout to the
// time left until it (rounded up to a millisecond), so that no statement
// of the unit outlives the request on the server either, even one whose
// cancellation never reaches it (a proxy in the way, a client that died).
// Without a deadline it queues nothing. A deadline already passed fails
// the setup with context.DeadlineExceeded. It travels with BEGIN and the
// first statement, at no extra round trip.
//
//	txs := scopedpgx.NewTx(pool, pgx.TxOptions{}, scopedpgx.WithSetup(scopedpgx.StatementTimeout))
//
// A deadline more than about 24.8 days away sets the largest value
// PostgreSQL takes, 2^31-1 ms. The timeout bounds each statement, not the
// transaction, and is the time left when the unit began: a unit that runs many statements can
// outlive its deadline by the time of the last.
func StatementTimeout(ctx context.Context, b *pgx.Batch) error {
	d, ok := ctx.Deadline()
	if !ok {
		return nil
	}
	left := time.Until(d)
	if left <= 0 {
		return fmt.Errorf("scopedpgx: statement_timeout: %w", context.DeadlineExceeded)
	}
	// PostgreSQL takes at most 2^31-1 ms (about 24.8 days): a later
	// deadline gets that bound rather than a failed setup.
	ms := min((left+time.Millisecond-1)/time.Millisecond, math.MaxInt32)
	// One statement text for every value, so that pgx prepares it once
	// per connection rather than once per unit.
	b.Queue("select set_config('statement_timeout', $1, true)", strconv.FormatInt(int64(ms), 10))
	return nil
}
