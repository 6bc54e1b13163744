package scopedpgxtest

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The pool's side of the DB: statements outside any transaction, each in
// a savepoint of its own, so that one that fails (a unique violation a
// test provokes on purpose) fails alone, as on a pool in autocommit mode,
// instead of aborting the test's transaction.

// alone runs f, a statement outside any transaction, in a savepoint of
// its own, with the turn held: released when f succeeded, rolled back
// when it failed (f returns its statement's error). The error is that of
// taking the turn, of the savepoint itself, or of the checks deferred to
// the statement's implicit COMMIT (see checkDeferred).
func (d *DB) alone(ctx context.Context, f func(ctx context.Context) error) error {
	if err := d.take(ctx); err != nil {
		return err
	}
	defer d.give()
	name := d.savepoint()
	if err := d.control("savepoint " + name); err != nil {
		return err
	}
	var failed error
	d.interruptible(ctx, func(ctx context.Context) { failed = f(ctx) })
	if failed != nil || d.aborted() {
		return d.control(rollbackTo(name))
	}
	if err := d.checkDeferred(); err != nil { // the statement's implicit COMMIT
		return both(err, d.control(rollbackTo(name)))
	}
	return d.control("release savepoint " + name)
}

// Exec runs sql outside any transaction, as pgxpool does, in a savepoint
// of its own.
func (d *DB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	var err error
	aerr := d.alone(ctx, func(ctx context.Context) error {
		tag, err = d.c.Exec(ctx, sql, args...)
		return err
	})
	return tag, both(cause(ctx, err), aerr)
}

// Query runs sql outside any transaction, in a savepoint of its own. The
// rows are read before Query returns (see the package documentation).
func (d *DB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	var r *rows
	var err error
	aerr := d.alone(ctx, func(ctx context.Context) error {
		r, err = d.collect(ctx, sql, args)
		return both(err, r.err)
	})
	if r == nil {
		return failedRows(aerr), aerr
	}
	r.err = both(cause(ctx, r.err), aerr)
	return r, cause(ctx, err)
}

// QueryRow runs sql outside any transaction, in a savepoint of its own.
func (d *DB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	r, _ := d.Query(ctx, sql, args...)
	return row{r.(*rows)}
}

// SendBatch sends b outside any transaction, in a savepoint of its own:
// if one of its statements fails, none of them has any effect, as for a
// batch on a pool, which PostgreSQL runs as one implicit transaction. The
// results are read before SendBatch returns.
func (d *DB) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	var br *batch
	aerr := d.alone(ctx, func(ctx context.Context) error {
		br = d.sendBatch(ctx, b)
		return br.failed()
	})
	if br == nil {
		return failedBatch(aerr)
	}
	br.withCause(ctx)
	br.end = both(br.end, aerr)
	return br
}

// CopyFrom copies rows outside any transaction, in a savepoint of its
// own.
func (d *DB) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	var n int64
	var err error
	aerr := d.alone(ctx, func(ctx context.Context) error {
		n, err = d.c.CopyFrom(ctx, table, columns, src)
		return err
	})
	return n, both(cause(ctx, err), aerr)
}

// Ping checks the test's connection, as pgxpool's Ping checks one of its
// own.
func (d *DB) Ping(ctx context.Context) error {
	if err := d.take(ctx); err != nil {
		return err
	}
	defer d.give()
	var err error
	d.interruptible(ctx, func(ctx context.Context) { err = d.c.Ping(ctx) })
	return cause(ctx, err)
}
