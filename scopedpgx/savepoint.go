package scopedpgx

import (
	"context"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// savepoint is a savepoint transaction begun from a [tx], as pgx's own
// nested transaction: its statements run on the same connection, under
// the same guard; Commit releases the savepoint, Rollback rolls back to
// it, and either ends it.
type savepoint struct {
	t      *tx
	num    int64
	closed bool // read and written with the guard held
}

var _ pgx.Tx = (*savepoint)(nil)

// enter claims the guard for one call on an open savepoint.
func (sp *savepoint) enter() error {
	if err := sp.t.g.enter(); err != nil {
		return err
	}
	if sp.closed {
		sp.t.g.leave()
		return pgx.ErrTxClosed
	}
	return nil
}

func (sp *savepoint) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := sp.enter(); err != nil {
		return nil, err
	}
	defer sp.t.g.leave()
	return sp.t.savepoint(ctx)
}

func (sp *savepoint) end(ctx context.Context, how string) error {
	if err := sp.enter(); err != nil {
		return err
	}
	defer sp.t.g.leave()
	_, err := sp.t.exec(ctx, how+" savepoint sp_"+strconv.FormatInt(sp.num, 10), nil)
	sp.closed = true
	return err
}

func (sp *savepoint) Commit(ctx context.Context) error   { return sp.end(ctx, "release") }
func (sp *savepoint) Rollback(ctx context.Context) error { return sp.end(ctx, "rollback to") }

func (sp *savepoint) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := sp.enter(); err != nil {
		return 0, err
	}
	defer sp.t.g.leave()
	return sp.t.copyFrom(ctx, table, columns, src)
}

func (sp *savepoint) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := sp.enter(); err != nil {
		return failedBatch{err}
	}
	defer sp.t.g.leave()
	return &batch{g: sp.t.g, br: sp.t.sendBatch(ctx, b)}
}

func (sp *savepoint) LargeObjects() pgx.LargeObjects { return sp.t.LargeObjects() }

func (sp *savepoint) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := sp.enter(); err != nil {
		return nil, err
	}
	defer sp.t.g.leave()
	return sp.t.prepare(ctx, name, sql)
}

func (sp *savepoint) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := sp.enter(); err != nil {
		return pgconn.CommandTag{}, err
	}
	defer sp.t.g.leave()
	return sp.t.exec(ctx, sql, args)
}

func (sp *savepoint) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := sp.enter(); err != nil {
		return &rows{err: err}, err
	}
	defer sp.t.g.leave()
	r, err := sp.t.query(ctx, sql, args)
	return &rows{g: sp.t.g, r: r}, err
}

func (sp *savepoint) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := sp.enter(); err != nil {
		return &row{err: err}
	}
	defer sp.t.g.leave()
	return &row{g: sp.t.g, r: sp.t.queryRow(ctx, sql, args)}
}

func (sp *savepoint) Conn() *pgx.Conn { return sp.t.Conn() }
