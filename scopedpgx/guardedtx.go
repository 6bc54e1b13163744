package scopedpgx

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// tx is the pgx.Tx that [Tx] hands out: the pool's transaction, every call
// of which goes through the guard. Savepoint transactions begun from it
// share its guard, since they share its connection.
type tx struct {
	g   *guard
	t   pgx.Tx
	own guard // the guard of an outermost transaction; g points here

	// Outermost transaction only: its connection, given back when it ends.
	c *pgxpool.Conn
	h *home
}

var _ pgx.Tx = (*tx)(nil)

func (t *tx) outer() bool { return t.g == &t.own }

// Begin starts a savepoint transaction on the same connection.
func (t *tx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.g.enter(); err != nil {
		return nil, err
	}
	defer t.g.leave()
	n, err := t.t.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &tx{g: t.g, t: n}, nil
}

// Commit commits. On the outermost transaction it first waits for a call
// in progress on another goroutine, like the end of the scope does.
func (t *tx) Commit(ctx context.Context) error {
	if !t.outer() {
		if err := t.g.enter(); err != nil {
			return err
		}
		defer t.g.leave()
		return t.t.Commit(ctx)
	}
	if !t.g.claimEnd() {
		return pgx.ErrTxClosed
	}
	defer t.g.leave()
	return t.end(ctx, pgx.Tx.Commit)
}

// Rollback rolls back, as Commit commits.
func (t *tx) Rollback(ctx context.Context) error {
	if !t.outer() {
		if err := t.g.enter(); err != nil {
			return err
		}
		defer t.g.leave()
		return t.t.Rollback(ctx)
	}
	if !t.g.claimEnd() {
		return pgx.ErrTxClosed
	}
	defer t.g.leave()
	return t.end(ctx, pgx.Tx.Rollback)
}

// end commits or rolls back the outermost transaction, which the caller
// has claimed, and gives its connection back whatever the outcome.
func (t *tx) end(ctx context.Context, how func(pgx.Tx, context.Context) error) error {
	defer t.h.giveBack(t.c)
	return how(t.t, ctx)
}

func (t *tx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.g.enter(); err != nil {
		return 0, err
	}
	defer t.g.leave()
	return t.t.CopyFrom(ctx, table, columns, src)
}

func (t *tx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.g.enter(); err != nil {
		return failedBatch{err}
	}
	defer t.g.leave()
	return &batch{g: t.g, br: t.t.SendBatch(ctx, b)}
}

// LargeObjects is not guarded: pgx builds it around the inner transaction.
func (t *tx) LargeObjects() pgx.LargeObjects { return t.t.LargeObjects() }

func (t *tx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.g.enter(); err != nil {
		return nil, err
	}
	defer t.g.leave()
	return t.t.Prepare(ctx, name, sql)
}

func (t *tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.g.enter(); err != nil {
		return pgconn.CommandTag{}, err
	}
	defer t.g.leave()
	return t.t.Exec(ctx, sql, args...)
}

func (t *tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.g.enter(); err != nil {
		return &rows{err: err}, err
	}
	defer t.g.leave()
	r, err := t.t.Query(ctx, sql, args...)
	return &rows{g: t.g, r: r}, err
}

func (t *tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.g.enter(); err != nil {
		return &row{err: err}
	}
	defer t.g.leave()
	return &row{g: t.g, r: t.t.QueryRow(ctx, sql, args...)}
}

// Conn is not guarded: it is pgx's escape hatch to the connection itself.
func (t *tx) Conn() *pgx.Conn { return t.t.Conn() }
