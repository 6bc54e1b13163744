package scopedpgx

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// WithSetup adds f to the setup of every transaction of [NewTx]:
// f queues, on b, statements that prepare the transaction, and they travel
// in the same pipeline as the lazy BEGIN and the unit's first statement,
// right after BEGIN: no round trip of their own. The place for PostgreSQL
// row-level security (select set_config('app.tenant_id', $1, true),
// set local role), an audit user, [StatementTimeout]. Several WithSetup
// queue in the order given.
//
//	setTenant := func(ctx context.Context, b *pgx.Batch) error {
//		tenant, ok := TenantFrom(ctx)
//		if !ok {
//			return errNoTenant // nothing is sent; Current fails
//		}
//		b.Queue("select set_config('app.tenant_id', $1, true)", tenant)
//		return nil
//	}
//	txs := scopedpgx.NewTx(pool, pgx.TxOptions{}, scopedpgx.WithSetup(setTenant))
//
// f runs once per transaction, in the factory, when Current creates the
// session, with the factory's context: the scope's values as they were
// when the scope began, so a tenant must be in the context before the
// scope begins (an authentication middleware runs before scopedhttp's). A
// child scope joins its parent's transaction with a savepoint and runs no
// setup. A unit that runs no statement sends nothing, setup included.
//
// It fails closed. If f returns an error, Current fails with it (errors.Is
// finds it), nothing is sent and no connection is taken. If a queued
// statement fails on the server, the unit's first statement fails with
// that error instead of running, as does every later call, and the unit
// rolls back. The statements' results are discarded; a QueuedQuery's
// callbacks are not called.
//
// Queue transaction-local forms (set_config(..., true), SET LOCAL): they
// end with the transaction, so nothing reaches the next user of the
// connection, behind PgBouncer in transaction pooling mode too. Queue a
// statement text that does not change from unit to unit, with the values
// as arguments: pgx prepares each text once per connection (under its
// default QueryExecModeCacheStatement), and a text it has not prepared
// costs a round trip.
//
// Behind PgBouncer in transaction pooling mode (tested with Debian's
// pgbouncer 1.18), each transaction may get another server connection,
// so pgx must not rely on named prepared statements, which live on one:
// set the pool's ConnConfig.DefaultQueryExecMode to
// pgx.QueryExecModeExec, pgx.QueryExecModeCacheDescribe or
// pgx.QueryExecModeSimpleProtocol (each tested with the setup, row-level
// security and the pipelined BEGIN). The default
// QueryExecModeCacheStatement fails there with "prepared statement ...
// does not exist". PgBouncer 1.21 and later can track protocol-level
// prepared statements (max_prepared_statements), which this project has
// not tested.
func WithSetup(f func(ctx context.Context, b *pgx.Batch) error) Option {
	if f == nil {
		panic("scopedpgx: WithSetup(nil)")
	}
	return optionFunc(func(c *config) { c.setups = append(c.setups, f) })
}

// runSetup runs the setups of cfg for the unit whose context is ctx and
// returns the statements they queued.
func runSetup(ctx context.Context, setups []func(context.Context, *pgx.Batch) error) ([]*pgx.QueuedQuery, error) {
	if len(setups) == 0 {
		return nil, nil
	}
	b := &pgx.Batch{}
	for _, f := range setups {
		if err := f(ctx, b); err != nil {
			return nil, fmt.Errorf("scopedpgx: setup: %w", err)
		}
	}
	return b.QueuedQueries, nil
}

// queueSetup queues the setup's statements after BEGIN. pgx rewrites
// queued queries in place as it sends them: it queues copies, so that a
// pipeline sent again (on another connection) sends them as given.
func (t *tx) queueSetup(b *pgx.Batch) {
	for _, q := range t.setup {
		cp := *q
		b.QueuedQueries = append(b.QueuedQueries, &cp)
	}
}

// readSetup reads the results of queueSetup. The first failure is the
// unit's: the server has aborted the transaction, and skips what follows
// in the pipeline.
func (t *tx) readSetup(br pgx.BatchResults) error {
	for range t.setup {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("scopedpgx: setup: %w", err)
		}
	}
	return nil
}
