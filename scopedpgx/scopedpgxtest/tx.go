package scopedpgxtest

import (
	"context"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// tx is a transaction of the isolated database: a savepoint of the test's
// transaction. One begun by [DB.Begin] holds the DB's slot, so that
// transactions begun from different places run one after another, never
// interleaved on the one connection; one begun by a tx's Begin (a child
// scope's, or pgx.BeginFunc's on a transaction) nests in it, as pgx's
// savepoints do.
type tx struct {
	d    *DB
	name string
	top  bool        // begun by DB.Begin: holds the slot
	left atomic.Bool // the slot was given back

	// Read and written with the turn held:
	closed bool
	lo     pgx.Tx // pgx's own transaction on the connection, for LargeObjects
}

var _ pgx.Tx = (*tx)(nil)

// Begin starts a transaction: a savepoint of the test's transaction. A
// transaction of Begin is open at most one at a time: while one is, Begin
// waits for it to end, for as long as ctx lets it (see "Transactions" in
// the package documentation). Savepoints begun on the transaction itself
// (its Begin, a child scope) do not wait.
func (d *DB) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := d.acquireSlot(ctx); err != nil {
		return nil, err
	}
	t := &tx{d: d, top: true}
	if err := d.take(ctx); err != nil {
		t.leave()
		return nil, err
	}
	defer d.give()
	if err := t.begin(); err != nil {
		t.leave()
		return nil, err
	}
	return t, nil
}

// BeginTx is Begin; txOptions are ignored, since a savepoint has no
// isolation level or access mode of its own.
func (d *DB) BeginTx(ctx context.Context, txOptions pgx.TxOptions) (pgx.Tx, error) {
	return d.Begin(ctx)
}

// begin makes t's savepoint, with the turn held.
func (t *tx) begin() error {
	t.name = t.d.savepoint()
	if err := t.d.control("savepoint " + t.name); err != nil {
		return err
	}
	t.d.open = append(t.d.open, t)
	return nil
}

// enter takes the turn for one call on an open t.
func (t *tx) enter(ctx context.Context) error {
	if err := t.d.take(ctx); err != nil {
		return err
	}
	if t.closed {
		t.d.give()
		return pgx.ErrTxClosed
	}
	return nil
}

// Begin starts a savepoint transaction nested in t, as pgx's Begin on a
// transaction does.
func (t *tx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	defer t.d.give()
	child := &tx{d: t.d}
	if err := child.begin(); err != nil {
		return nil, err
	}
	return child, nil
}

// Commit releases t's savepoint: its work becomes part of the enclosing
// transaction. A transaction of DB.Begin that a failed statement aborted
// is rolled back instead, and Commit returns [pgx.ErrTxCommitRollback],
// as COMMIT does; a nested one fails as RELEASE SAVEPOINT fails, and
// stays open as scopedpgx's savepoints do, so that a Rollback after it
// undoes its work.
func (t *tx) Commit(ctx context.Context) error { return t.end(true) }

// Rollback rolls back to t's savepoint and releases it: its work, and only
// its work, is undone.
func (t *tx) Rollback(ctx context.Context) error { return t.end(false) }

// end ends t and every savepoint begun in it. It waits for a call in
// progress, but not on its context: an end must happen.
func (t *tx) end(commit bool) error {
	defer t.leave()
	if err := t.d.take(context.Background()); err != nil {
		return err
	}
	defer t.d.give()
	if t.closed {
		return pgx.ErrTxClosed
	}
	if commit && !t.top {
		// A RELEASE refused (in an aborted transaction) leaves the
		// savepoint open, as scopedpgx's savepoints do: a Rollback after
		// it rolls back to it, and the enclosing transaction is usable
		// again.
		if err := t.d.control("release savepoint " + t.name); err != nil {
			return err
		}
		t.closeFrom()
		return nil
	}
	t.closeFrom()
	switch {
	case !commit:
		return t.d.control(rollbackTo(t.name))
	case t.top && t.d.aborted():
		if err := t.d.control(rollbackTo(t.name)); err != nil {
			return err
		}
		return pgx.ErrTxCommitRollback
	case t.top:
		// COMMIT runs the checks deferred to it; a failed one rolls back.
		if err := t.d.checkDeferred(); err != nil {
			return both(err, t.d.control(rollbackTo(t.name)))
		}
	}
	return t.d.control("release savepoint " + t.name)
}

// closeFrom closes t and the transactions begun after it, which its
// RELEASE or ROLLBACK TO ends on the server, with the turn held.
func (t *tx) closeFrom() {
	open := t.d.open
	for i, o := range open {
		if o == t {
			for _, c := range open[i:] {
				c.closed = true
			}
			t.d.open = open[:i]
			return
		}
	}
	t.closed = true
}

func (t *tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.enter(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	defer t.d.give()
	var tag pgconn.CommandTag
	var err error
	t.d.interruptible(ctx, func(ctx context.Context) { tag, err = t.d.c.Exec(ctx, sql, args...) })
	return tag, cause(ctx, err)
}

func (t *tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.enter(ctx); err != nil {
		return failedRows(err), err
	}
	defer t.d.give()
	var r *rows
	var err error
	t.d.interruptible(ctx, func(ctx context.Context) { r, err = t.d.collect(ctx, sql, args) })
	r.err = cause(ctx, r.err)
	return r, cause(ctx, err)
}

func (t *tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	r, _ := t.Query(ctx, sql, args...)
	return row{r.(*rows)}
}

func (t *tx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.enter(ctx); err != nil {
		return failedBatch(err)
	}
	defer t.d.give()
	var br *batch
	t.d.interruptible(ctx, func(ctx context.Context) { br = t.d.sendBatch(ctx, b) })
	return br.withCause(ctx)
}

func (t *tx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.enter(ctx); err != nil {
		return 0, err
	}
	defer t.d.give()
	var n int64
	var err error
	t.d.interruptible(ctx, func(ctx context.Context) { n, err = t.d.c.CopyFrom(ctx, table, columns, src) })
	return n, cause(ctx, err)
}

// Prepare prepares sql on the test's connection. Prepared statements
// belong to the session, not to the transaction; they end with the
// connection, which Isolate closes when the test ends.
func (t *tx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.enter(ctx); err != nil {
		return nil, err
	}
	defer t.d.give()
	var sd *pgconn.StatementDescription
	var err error
	t.d.interruptible(ctx, func(ctx context.Context) { sd, err = t.d.c.Prepare(ctx, name, sql) })
	return sd, cause(ctx, err)
}

// LargeObjects works on the test's connection without taking turns, as
// Conn does: use it while nothing else runs on the database.
func (t *tx) LargeObjects() pgx.LargeObjects {
	if err := t.enter(context.Background()); err != nil {
		return pgx.LargeObjects{}
	}
	defer t.d.give()
	if t.lo == nil {
		// pgx's own transaction object on a connection already in a
		// transaction: an empty statement stands in for BEGIN. It is
		// never committed or rolled back; t's savepoint ends its work.
		lo, err := t.d.c.BeginTx(context.Background(), pgx.TxOptions{BeginQuery: ";"})
		if err != nil {
			return pgx.LargeObjects{}
		}
		t.lo = lo
	}
	return t.lo.LargeObjects()
}

// Conn returns the test's connection: pgx's escape hatch, which bypasses
// the turns. Never run COMMIT or ROLLBACK on it.
func (t *tx) Conn() *pgx.Conn { return t.d.c }
