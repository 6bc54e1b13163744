package scopedpgx

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is what a [DBTX] runs statements on outside a scope: a
// *pgxpool.Pool in production, and anything else with the same methods,
// such as the isolated database of scopedpgxtest in tests (a *pgx.Conn
// and a pgx.Tx have them too).
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// DBTX serves the interface sqlc generates for pgx/v5 (also named DBTX:
// Exec, Query and QueryRow, plus CopyFrom and SendBatch when sqlc emits
// them) from the scope's transaction inside a scope and from the pool
// outside one, so that one *Queries serves both:
//
//	txs := scopedpgx.NewTx(pool, pgx.TxOptions{})
//	queries := sqlcdb.New(scopedpgx.NewDBTX(pool, txs)) // sqlcdb: your generated package
//
// Each call looks at its context: inside a scope, the statement runs in
// the scope's transaction (txs.Current: a connection acquired on first
// use, BEGIN sent with the first statement); with no scope in the context
// ([scoped.ErrNoScope]), it runs on pool, each statement on its own, as
// pgxpool runs it.
//
// When the scope's transaction cannot be had (the pool gave no connection
// before the scope's context ended, the pool is closed, the scope has
// ended), nothing runs anywhere, and the error is returned, wrapped: by
// Exec, Query, CopyFrom directly, by the Scan of QueryRow's row, and by
// every method of SendBatch's results. A statement never falls back to the
// pool inside a scope: it would escape the transaction. This is
// scopedsql.DBTX's rule, for pgx.
type DBTX struct {
	pool Querier
	txs  *scoped.ScopedSession[pgx.Tx]
}

// NewDBTX returns a DBTX over pool and txs, whose transactions must be
// begun on pool (or, in tests, on the same isolated database).
func NewDBTX(pool Querier, txs *scoped.ScopedSession[pgx.Tx]) *DBTX {
	if pool == nil || txs == nil {
		panic("scopedpgx: NewDBTX with nil Querier or ScopedSession")
	}
	return &DBTX{pool: pool, txs: txs}
}

func (d *DBTX) pick(ctx context.Context) (Querier, error) {
	tx, err := d.txs.Current(ctx)
	switch {
	case err == nil:
		return tx, nil
	case errors.Is(err, scoped.ErrNoScope):
		return d.pool, nil
	}
	return nil, fmt.Errorf("scopedpgx: no transaction for the statement, nothing ran: %w", err)
}

// Exec runs sql in the scope's transaction, or on the pool outside a
// scope.
func (d *DBTX) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	q, err := d.pick(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return q.Exec(ctx, sql, args...)
}

// Query runs sql in the scope's transaction, or on the pool outside a
// scope. If there is no transaction to run it in, the error is returned
// with rows whose Err is that error and whose Close does nothing, as pgx
// returns them.
func (d *DBTX) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	q, err := d.pick(ctx)
	if err != nil {
		return &rows{err: err}, err
	}
	return q.Query(ctx, sql, args...)
}

// QueryRow runs sql in the scope's transaction, or on the pool outside a
// scope. If there is no transaction to run it in, the returned row's Scan
// returns why.
func (d *DBTX) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	q, err := d.pick(ctx)
	if err != nil {
		return &row{err: err}
	}
	return q.QueryRow(ctx, sql, args...)
}

// SendBatch sends b in the scope's transaction, or on the pool outside a
// scope. If there is no transaction to send it in, every method of the
// results returns why.
func (d *DBTX) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	q, err := d.pick(ctx)
	if err != nil {
		return failedBatch{err}
	}
	return q.SendBatch(ctx, b)
}

// CopyFrom copies rows in the scope's transaction, or on the pool outside
// a scope.
func (d *DBTX) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	q, err := d.pick(ctx)
	if err != nil {
		return 0, err
	}
	return q.CopyFrom(ctx, table, columns, src)
}
