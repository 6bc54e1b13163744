package scopedpgx

import (
	"context"
	"errors"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Tx returns a factory that begins one transaction per scope on a
// connection acquired from pool, for [scoped.New]. Prefer [NewTx], which
// also installs [Rollback].
//
// The factory receives the scope's context: acquiring the connection and
// sending BEGIN give up when that context is done, so a request past its
// deadline does not queue for a connection. Unlike database/sql, pgx does
// not end the transaction when that context is cancelled later; the scope
// ends it.
//
// The transactions it returns are guarded. A call made while another call
// on the same transaction is running fails at once instead of racing it,
// and ending the transaction waits for a running call to return. So a
// scope ended on another goroutine (by the safety net of [scoped.Begin]
// when the scope's context is cancelled) never races a query in flight,
// and a call made after the end returns [pgx.ErrTxClosed] instead of using
// a connection that has gone back to the pool. Conn and LargeObjects are
// pgx's escape hatches and bypass the guard.
func Tx(pool *pgxpool.Pool, opts pgx.TxOptions) func(ctx context.Context) (pgx.Tx, error) {
	if pool == nil {
		panic("scopedpgx: Tx with nil pool")
	}
	h := newHome(pool)
	return func(ctx context.Context) (pgx.Tx, error) {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		t, err := c.BeginTx(ctx, opts)
		if err != nil {
			h.giveBack(c)
			return nil, err
		}
		g := &tx{t: t, c: c, h: h}
		g.g = &g.own
		return g, nil
	}
}

// NewTx returns a ScopedSession of pgx transactions begun on pool with
// txOpts, one per scope, as [Tx] makes them. [scoped.Scope.Commit] and
// [scoped.ScopedSession.Commit] commit them; otherwise they are rolled
// back with [Rollback], so a transaction its handler committed or rolled
// back by hand is not a teardown failure. A commit has no such leniency:
// finding the transaction already closed, it cannot tell a hand commit
// from a hand rollback or a failed commit, so it fails with
// [pgx.ErrTxClosed]. opts come after NewTx's own and may override them.
func NewTx(pool *pgxpool.Pool, txOpts pgx.TxOptions, opts ...scoped.Option) *scoped.ScopedSession[pgx.Tx] {
	all := make([]scoped.Option, 0, 1+len(opts))
	all = append(all, scoped.WithRollback(Rollback))
	return scoped.New(Tx(pool, txOpts), append(all, opts...)...)
}

// Rollback is the teardown [NewTx] installs with [scoped.WithRollback]. It
// rolls t back and reports an error only when something was left undone:
// it returns nil when t was already committed or rolled back by hand
// (pgx's Rollback then says [pgx.ErrTxClosed]), and when t's connection
// is closed or still busy with rows nobody closed, as after a query whose
// context was cancelled: pgx then closes the connection, PostgreSQL aborts
// the transaction of a closed session, and the connection leaves the pool,
// so nothing is left to undo and nothing stays acquired. For a transaction
// from [Tx] it first waits for a call in progress to return.
func Rollback(ctx context.Context, t pgx.Tx) error {
	g, ok := t.(*tx)
	if !ok || !g.outer() {
		if err := t.Rollback(ctx); !errors.Is(err, pgx.ErrTxClosed) {
			return err
		}
		return nil
	}
	if !g.g.claimEnd() {
		return nil // committed or rolled back by hand
	}
	defer g.g.leave()
	// No call is running and none can start: the connection's state is
	// ours to read until it is given back.
	c := g.t.Conn()
	dead := c.IsClosed() || c.PgConn().IsBusy()
	err := g.end(ctx, pgx.Tx.Rollback)
	if err != nil && !dead && !errors.Is(err, pgx.ErrTxClosed) {
		return err
	}
	return nil
}
