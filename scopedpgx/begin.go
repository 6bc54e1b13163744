package scopedpgx

import (
	"context"
	"errors"
	"strings"

	"github.com/go-scoped/scoped/shared/xact"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// beginSQL is the statement that begins a transaction with opts, as pgx
// writes it.
func beginSQL(opts pgx.TxOptions) string {
	if opts.BeginQuery != "" {
		return opts.BeginQuery
	}
	var b strings.Builder
	b.WriteString("begin")
	if opts.IsoLevel != "" {
		b.WriteString(" isolation level ")
		b.WriteString(string(opts.IsoLevel))
	}
	if opts.AccessMode != "" {
		b.WriteByte(' ')
		b.WriteString(string(opts.AccessMode))
	}
	if opts.DeferrableMode != "" {
		b.WriteByte(' ')
		b.WriteString(string(opts.DeferrableMode))
	}
	return b.String()
}

// xidSQL reads the transaction's id, NULL until it has written, and when
// it began (see shared/xact).
const xidSQL = xact.ReadSQL

// errFallback says that the first pipeline failed before BEGIN ran (a
// statement the server could not prepare, arguments pgx could not
// encode): the caller begins the transaction on its own and runs its
// statement again, so that the statement's error is reported, and leaves
// the transaction, as pgx's own would.
var errFallback = errors.New("scopedpgx: begin on its own")

// send sends the statements queue adds, preceded by BEGIN if the
// transaction has not begun and followed by the read of its id if readXid,
// in one pipeline. It returns the results positioned at queue's first
// statement, or an error if the transaction could not begin. A BEGIN that
// failed because its connection was lost changed nothing on the server
// (the server ends the transaction of a session it lost), so the
// pipeline is sent again on another connection, up to beginRetries times.
func (t *tx) send(ctx context.Context, queue func(*pgx.Batch), readXid bool) (pgx.BatchResults, error) {
	for retries := 0; ; retries++ {
		first := !t.began
		b := &pgx.Batch{}
		if first {
			b.Queue(t.s.begin)
			t.queueCheck(b)
		}
		queue(b)
		if readXid {
			b.Queue(xidSQL)
		}
		br := t.conn().SendBatch(ctx, b)
		if !first {
			return br, nil
		}
		_, err := br.Exec()
		if err == nil {
			err = t.readCheck(br)
		}
		if err == nil {
			t.began = true
			return br, nil
		}
		_ = br.Close()
		if moved, err := t.offReplica(ctx, err); moved {
			if err != nil {
				return nil, t.fail(err)
			}
			retries = -1
			continue
		}
		c := t.conn()
		if connectionLost(ctx, c, err) {
			if retries < t.s.beginRetries {
				if rerr := t.reacquire(ctx); rerr != nil {
					return nil, t.fail(errors.Join(err, rerr))
				}
				continue
			}
			return nil, t.fail(err)
		}
		if t.untouched(ctx) {
			return nil, err
		}
		if ctx.Err() == nil && reusable(c) {
			return nil, errFallback
		}
		return nil, t.fail(err)
	}
}

// ensureBegun sends BEGIN on its own if the transaction has not begun.
func (t *tx) ensureBegun(ctx context.Context) error {
	if err := t.usable(); err != nil {
		return err
	}
	if t.began {
		return nil
	}
	if err := t.beginAlone(ctx); err != nil {
		if t.untouched(ctx) {
			return err
		}
		return t.fail(err)
	}
	return nil
}

// untouched reports, after a BEGIN that failed, whether the failure was
// only the call's: its context ended (pgx refuses a done context before
// sending anything, or the statement was cancelled) and the connection is
// still idle, outside a transaction. Nothing began and nothing failed to
// begin: that call fails, as in pgx's own transaction, and the next call
// begins the transaction.
func (t *tx) untouched(ctx context.Context) bool {
	return ctx.Err() != nil && t.c != nil && reusable(t.conn())
}

// beginAlone sends BEGIN, again on another connection if its connection
// was lost, up to beginRetries times.
func (t *tx) beginAlone(ctx context.Context) error {
	for retries := 0; ; retries++ {
		c := t.conn()
		err := t.beginOn(ctx, c)
		if err == nil {
			t.began = true
			return nil
		}
		if moved, err := t.offReplica(ctx, err); moved {
			if err != nil {
				return err
			}
			retries = -1
			continue
		}
		if retries < t.s.beginRetries && connectionLost(ctx, c, err) {
			if rerr := t.reacquire(ctx); rerr != nil {
				return errors.Join(err, rerr)
			}
			continue
		}
		if !c.IsClosed() && c.PgConn().TxStatus() != 'I' {
			closeNow(c)
		}
		return err
	}
}

// reacquire replaces a lost connection with another from the pool. The
// next BEGIN is the test of the new one: a connection that is dead too
// (the server restarted, or terminated the pool's connections together)
// fails it at no more cost than a ping would, and is replaced in turn.
func (t *tx) reacquire(ctx context.Context) error {
	t.release()
	c, err := t.s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	t.hold(c)
	return nil
}

// beginRetries bounds how often a BEGIN whose connection was lost is sent
// again: once per connection the pool can hold, each of which may be dead
// (pgxpool checks only those idle for more than a second), and once more,
// on a connection dialled for it, as scopedsql bounds its own.
func beginRetries(pool *pgxpool.Pool) int { return int(pool.Config().MaxConns) + 1 }

// fail makes err the transaction's: every call after it returns it.
func (t *tx) fail(err error) error {
	if t.failed == nil {
		t.failed = &beginError{err}
	}
	return t.failed
}

// finish reads the rest of a pipeline: the transaction's id if readXid,
// then the pipeline's end.
func (t *tx) finish(br pgx.BatchResults, readXid bool) {
	if readXid {
		var xid, began *string
		if err := br.QueryRow().Scan(&xid, &began); err == nil {
			if xid != nil && began != nil {
				t.xid, t.xidBegan = *xid, *began
			}
			t.xidUnsure = false
		} else {
			t.unsure()
		}
	}
	_ = br.Close()
}
