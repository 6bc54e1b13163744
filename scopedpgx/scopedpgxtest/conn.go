package scopedpgxtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The one connection: calls take turns on it, one at a time, and a call's
// context never reaches pgx, which would close the connection (and so end
// the test's transaction) to interrupt a statement. A context that ends
// while its statement runs sends PostgreSQL a cancel request instead: the
// statement fails, as on a pool, and the connection stays.

// cancelTimeout bounds sending a cancel request.
const cancelTimeout = 10 * time.Second

// take waits for the connection's turn, for as long as ctx lets it. It
// fails if ctx is done, the test has ended, or its transaction is broken.
// The caller calls give when done.
func (d *DB) take(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case d.turn <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("scopedpgxtest: waiting for the test's connection: %w", context.Cause(ctx))
	case <-d.done:
		return ErrClosed
	}
	select {
	case <-d.done: // the end was waiting for the same turn
		d.give()
		return ErrClosed
	default:
	}
	if d.broken != nil {
		d.give()
		return d.broken
	}
	return nil
}

// give gives the turn back.
func (d *DB) give() { <-d.turn }

// interruptible runs f, a call on the connection, with the turn held. f's
// context has ctx's values but not its cancellation: when ctx ends while
// f runs, a cancel request is sent, and interruptible returns only once
// it is answered, so that it cannot cancel a later statement.
func (d *DB) interruptible(ctx context.Context, f func(ctx context.Context)) {
	sent := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(sent)
		cctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
		defer cancel()
		_ = d.c.PgConn().CancelRequest(cctx)
	})
	f(context.WithoutCancel(ctx))
	if !stop() {
		<-sent
	}
	d.noteBroken()
}

// noteBroken records, with the turn held, that the test's transaction has
// ended under the isolation: its connection was lost, or a statement
// committed or rolled it back.
func (d *DB) noteBroken() {
	switch {
	case d.broken != nil:
	case d.c.IsClosed():
		d.broken = fmt.Errorf("%w: its connection was lost", ErrBroken)
	case d.c.PgConn().TxStatus() == 'I':
		d.broken = fmt.Errorf("%w: a statement ended it (COMMIT or ROLLBACK as SQL text?)", ErrBroken)
	}
}

// aborted reports, with the turn held, whether a failed statement has
// aborted the transaction or savepoint the connection is in.
func (d *DB) aborted() bool { return d.c.PgConn().TxStatus() == 'E' }

// control runs one of the isolation's own statements (SAVEPOINT, RELEASE,
// ROLLBACK TO) with the turn held.
func (d *DB) control(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	_, err := d.c.Exec(ctx, sql)
	d.noteBroken()
	if d.broken != nil {
		return errors.Join(err, d.broken)
	}
	return err
}

// checkDeferred runs, with the turn held, the checks that COMMIT runs at
// the end of a transaction (deferred constraints and constraint
// triggers), which RELEASE SAVEPOINT does not, and returns their error,
// so that a commit fails as it would on a pool. They run in a savepoint
// rolled back afterwards: the constraints keep their modes for the rest
// of the test, and PostgreSQL marks the checks pending again.
func (d *DB) checkDeferred() error {
	const name = "scopedpgxtest_check" // released each time
	if err := d.control("savepoint " + name); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	_, cerr := d.c.Exec(ctx, "set constraints all immediate")
	cancel()
	if err := d.control(rollbackTo(name)); err != nil {
		return both(cerr, err)
	}
	return cerr
}

// savepoint names a new savepoint, with the turn held.
func (d *DB) savepoint() string {
	d.spNum++
	return "scopedpgxtest_" + strconv.FormatInt(d.spNum, 10)
}

// rollbackTo is the SQL that undoes a savepoint's work and ends it.
func rollbackTo(name string) string {
	return "rollback to savepoint " + name + "; release savepoint " + name
}

// cause adds to err, a statement's error, that its context ended, as pgx
// says when it interrupts a statement, so that errors.Is(err,
// context.Canceled) holds.
func cause(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil || errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("%w: %w", context.Cause(ctx), err)
}

// both returns a and b joined, or the one that is not nil as it is.
func both(a, b error) error {
	switch {
	case b == nil:
		return a
	case a == nil:
		return b
	}
	return errors.Join(a, b)
}
