package scopedriver

import (
	"context"
	"fmt"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// Insert enqueues a River job in the transaction of ctx's unit of work
// (txs's session of the unit, begun if need be), with River's InsertTx:
// the job exists if and only if the unit commits. It is the transactional
// outbox, and the crash-safe twin of [scoped.OnCommit]: a hook registered
// with OnCommit is lost if the process dies between the commit and the
// hook, while a job enqueued by Insert is saved by the commit itself, and
// River then runs it (at least once, as River runs every job). A unit
// that rolls back, at any depth, takes its job with it: in a child unit
// the insert is part of the child's savepoint.
//
// Outside a unit of work Insert fails with [scoped.ErrNoScope] rather
// than enqueue on the pool: a job that exists whatever the unit does is
// what it is for not to do. Use client.Insert for that.
//
// txs is typically [scopedpgx.NewTx] on River's own pool (the one the
// client's riverpgxv5 driver uses), client a *river.Client[pgx.Tx],
// which may be insert-only.
func Insert(ctx context.Context, txs *scoped.ScopedSession[pgx.Tx], client *river.Client[pgx.Tx], args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error) {
	tx, err := unitTx(ctx, txs)
	if err != nil {
		return nil, fmt.Errorf("scopedriver: insert %s job: %w", args.Kind(), err)
	}
	res, err := client.InsertTx(ctx, tx, args, opts)
	if err != nil {
		return nil, fmt.Errorf("scopedriver: insert %s job: %w", args.Kind(), err)
	}
	return res, nil
}

// InsertMany is [Insert] for several jobs at once, with River's
// InsertManyTx.
func InsertMany(ctx context.Context, txs *scoped.ScopedSession[pgx.Tx], client *river.Client[pgx.Tx], params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error) {
	tx, err := unitTx(ctx, txs)
	if err != nil {
		return nil, fmt.Errorf("scopedriver: insert %d jobs: %w", len(params), err)
	}
	res, err := client.InsertManyTx(ctx, tx, params)
	if err != nil {
		return nil, fmt.Errorf("scopedriver: insert %d jobs: %w", len(params), err)
	}
	return res, nil
}

// unitTx is txs's transaction of ctx's unit of work. A ScopedSession
// with a ScopeFunc of its own could find a session outside any unit:
// the unit is asked for first.
func unitTx(ctx context.Context, txs *scoped.ScopedSession[pgx.Tx]) (pgx.Tx, error) {
	if _, ok := scoped.FromContext(ctx); !ok {
		return nil, scoped.ErrNoScope
	}
	return txs.Current(ctx)
}
