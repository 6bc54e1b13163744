package scopedpgx

import (
	"context"
	"errors"
	"fmt"
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
	// A RELEASE that failed (refused in an aborted transaction) leaves the
	// savepoint open, unlike pgx's own: a Rollback after it rolls back to
	// it, and the enclosing transaction is usable again.
	sp.closed = err == nil || how != "release"
	return err
}

func (sp *savepoint) Commit(ctx context.Context) error   { return sp.end(ctx, "release") }
func (sp *savepoint) Rollback(ctx context.Context) error { return sp.end(ctx, "rollback to") }

// teardown rolls the savepoint back for [Rollback], which a child scope's
// end calls, perhaps on the safety net's goroutine while the handler is
// inside a call or between two (streaming rows to a client that left).
// It waits for a call in progress, and calls made meanwhile wait for it.
// Nothing is left to undo, and it reports nothing, when the savepoint or
// the transaction has ended, or when the connection is closed or still
// busy with rows nobody closed: the connection is then closed, and the
// server rolls back the whole transaction with its session, so that the
// enclosing transaction's later calls and its commit fail.
func (sp *savepoint) teardown(ctx context.Context) error {
	t := sp.t
	if !t.g.claimPart() {
		return nil // the transaction has ended
	}
	defer t.g.leave()
	if sp.closed || t.c == nil {
		return nil
	}
	sp.closed = true
	c := t.conn()
	name := "sp_" + strconv.FormatInt(sp.num, 10)
	if c.IsClosed() || c.PgConn().IsBusy() {
		closeNow(c)
		t.lose(name)
		return nil
	}
	_, err := t.exec(ctx, "rollback to savepoint "+name, nil)
	if err != nil && c.IsClosed() {
		t.lose(name)
		return nil
	}
	return err
}

// lose records that the transaction's connection was closed when
// savepoint name ended: the server rolled the whole transaction back, and
// every later call, and the commit, say so.
func (t *tx) lose(name string) {
	if t.failed == nil {
		t.failed = fmt.Errorf("%w: its connection was closed when savepoint %s was rolled back (busy with rows nobody closed, or lost)", errRolledBack, name)
	}
}

// errRolledBack is wrapped by the calls on a transaction that its
// savepoint's teardown found unusable.
var errRolledBack = errors.New("scopedpgx: the transaction was rolled back")

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
