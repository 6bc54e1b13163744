package scopedpgx

import (
	"context"
	"errors"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// txFactory makes the transactions of [NewTx], its options applied.
func txFactory(pool *pgxpool.Pool, opts pgx.TxOptions, cfg config) func(ctx context.Context) (pgx.Tx, error) {
	s := &txShared{pool: pool, h: newHome(pool), cfg: cfg, begin: beginSQL(opts), commit: "commit", beginRetries: beginRetries(pool),
		// A read-only transaction can write only temporary tables, which
		// die with its connection: nothing to resolve.
		verify: cfg.verify && opts.AccessMode != pgx.ReadOnly}
	s.router = newRouter(s, opts)
	return func(ctx context.Context) (pgx.Tx, error) {
		begin, err := unitBegin(ctx, opts, s.begin)
		if err != nil {
			return nil, err
		}
		// Before a connection is taken: a setup that fails takes none.
		setup, err := runSetup(ctx, cfg.setups)
		if err != nil {
			return nil, err
		}
		t := &tx{s: s, begin: begin, setup: setup}
		t.g = &t.own
		s.router.reportRoute(ctx, t)
		// A keyed session's context is bounded by its caller's (see bounded).
		bctx, end := bounded(ctx)
		c, err := s.acquire(bctx, t) // from a replica, for a read-only unit
		if err == nil {
			t.hold(c)
			if cfg.eager {
				err = t.beginAlone(bctx)
			}
		}
		cause := end()
		if cause != nil {
			err = cause
		}
		if err != nil {
			if t.c != nil {
				// A caller that left is not held while pgx finishes closing
				// a connection its leaving cut short: that sends a cancel
				// request, which waits for a server that may not answer.
				t.s.h.giveBackWaiting(t.c, cause == nil && ctx.Err() == nil)
				t.c = nil
			}
			return nil, err
		}
		return t, nil
	}
}

// NewTx returns a ScopedSession of pgx transactions begun on pool with
// txOpts, one per scope. opts are this package's options ([WithSetup],
// [WithEagerBegin], [WithoutVerifiedCommit], [WithCommitResolveTimeout],
// [WithReplicas], ...) and any scoped.Option, in one list (see [Option]).
//
// Each transaction is made on a connection acquired with the scope's
// context (for a session keyed with [scoped.WithScopeFunc], bounded by
// the context of the Current that creates it), so a request past its
// deadline does not queue for a connection, and a pool that cannot give
// one fails Current. Current
// sends nothing: BEGIN travels in the same round trip as the
// transaction's first statement (see "Round trips" in the package
// documentation), and a transaction that ran no statement sends neither
// BEGIN nor COMMIT. A BEGIN that fails fails that first statement, and
// every call after it, with an error that says so and wraps the server's.
// [WithEagerBegin] sends BEGIN in Current instead. Unlike database/sql,
// pgx does not end the transaction when a context is cancelled later; the
// scope ends it.
//
// The transactions are guarded. A call made while another call on the
// same transaction is running fails at once instead of racing it, and
// ending the transaction waits for a running call to return. So a scope
// ended on another goroutine (by the safety net of [scoped.Begin] when the
// scope's context is cancelled) never races a query in flight, and a call
// made after the end returns [pgx.ErrTxClosed] instead of using a
// connection that has gone back to the pool. Conn and LargeObjects are
// pgx's escape hatches and bypass the guard.
//
// [scoped.Scope.Commit] and [scoped.ScopedSession.Commit] commit the
// transactions; otherwise they are rolled back with [Rollback], so a
// transaction its handler committed or rolled back by hand is not a
// teardown failure. A commit has no such leniency: finding the
// transaction already closed, it cannot tell a hand commit from a hand
// rollback or a failed commit, so it fails with [pgx.ErrTxClosed]. The
// scoped.Options come after NewTx's own and may override them (a
// scoped.WithRollback of the application's). The unit's transaction
// options, set with [WithTxOptions] on the context the unit begins with,
// are laid over txOpts.
func NewTx(pool *pgxpool.Pool, txOpts pgx.TxOptions, opts ...Option) *scoped.ScopedSession[pgx.Tx] {
	if pool == nil {
		panic("scopedpgx: NewTx with nil pool")
	}
	cfg, core := configOf(opts)
	all := make([]scoped.Option, 0, 1+len(core))
	all = append(all, scoped.WithRollback(Rollback))
	return scoped.New(txFactory(pool, txOpts, cfg), append(all, core...)...)
}

// Rollback is the teardown [NewTx] installs with [scoped.WithRollback]. It
// rolls t back and reports an error only when something was left undone:
// it returns nil when t was already committed or rolled back by hand
// (pgx's Rollback then says [pgx.ErrTxClosed]), when t never began (it
// then sends nothing), and when t's connection is closed or still busy
// with rows nobody closed, as after a query whose context was cancelled:
// the connection is then closed, PostgreSQL aborts the transaction of a
// closed session, and nothing is left to undo and nothing stays acquired.
// For a transaction of [NewTx] it first waits for a call in progress to
// return. A child scope's savepoint of such a transaction is rolled back
// to the same rules, on the safety net's goroutine too: a client that
// leaves while a nested unit of work streams rows logs nothing. When its
// connection is busy with rows nobody closed, the connection is closed,
// which rolls back the whole transaction: the enclosing unit's later
// calls and its commit fail, saying so.
func Rollback(ctx context.Context, t pgx.Tx) error {
	if sp, ok := t.(*savepoint); ok {
		return sp.teardown(ctx)
	}
	g, ok := t.(*tx)
	if !ok {
		if err := t.Rollback(ctx); !errors.Is(err, pgx.ErrTxClosed) {
			return err
		}
		return nil
	}
	if !g.g.claimEnd() {
		return nil // committed or rolled back by hand
	}
	defer g.g.leave()
	defer g.release()
	if g.c == nil {
		return nil
	}
	// No call is running and none can start: the connection's state is
	// ours to read until it is given back.
	c := g.conn()
	dead := c.IsClosed() || c.PgConn().IsBusy()
	if err := g.rollbackClaimed(ctx); err != nil && !dead {
		return err
	}
	return nil
}
