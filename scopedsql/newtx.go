package scopedsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/go-scoped/scoped"
)

// NewTx returns a ScopedSession of transactions begun on db with txOpts
// (nil: the driver's defaults), one per scope, as [Tx] begins them, each
// followed by the statements of its [WithSetup] functions. opts are this
// package's options for NewTx ([WithSetup]) and any scoped.Option, in one
// list (see [Option]).
//
// The setup runs once per transaction, right after BEGIN and before
// Current returns the transaction, so before any statement of the unit:
// the place for PostgreSQL row-level security
// (SELECT set_config('app.tenant_id', $1, true), SET LOCAL ROLE), an audit
// user, a statement timeout ([StatementTimeout]). A child scope joins its
// parent's transaction with a savepoint and runs no setup again. The setup
// fails closed: if it returns an error, or one of its statements fails,
// the transaction is rolled back and Current fails with that error
// (errors.Is finds it), so no statement of the unit runs; the next Current
// of the scope begins again and runs the setup again. Use the
// transaction-local forms (SET LOCAL, set_config(..., true)): they end with
// the transaction, so nothing reaches the next user of the connection,
// behind PgBouncer in transaction pooling mode too.
//
// The setup's context is the one the factory gets: the scope's values as
// they were when the scope began, so a tenant must be in the context
// before the scope begins (an authentication middleware runs before
// scopedhttp's). The setup runs its statements on the transaction, each
// a round trip of its own after BEGIN's (with lib/pq a statement with
// arguments costs two: it is prepared first); scopedpgx's WithSetup sends
// them with BEGIN and the first statement instead, in one round trip.
//
// The unit's transaction options, set with [WithTxOptions] on the context
// the unit begins with, are laid over txOpts.
//
// NewTx's sessions end with a commit and a close of NewTx's own: the
// core's default commit, except that a replica's COMMIT that lost its
// connection is no error ([WithReplicas]: a hot standby's transaction
// saved nothing), and a close that reads the position a unit yields
// ([WithReadAfter]). A scoped.WithCommit (such as [VerifiedCommit], which
// also forgives a lost COMMIT of a transaction that wrote nothing) or
// scoped.WithClose in opts replaces them; with a WithClose, units yield
// no position.
func NewTx(db *sql.DB, txOpts *sql.TxOptions, opts ...Option) *scoped.ScopedSession[*sql.Tx] {
	if db == nil {
		panic("scopedsql: NewTx with nil *sql.DB")
	}
	cfg, core := splitTxOptions(opts)
	f := newTxMaker(db, txOpts, cfg)
	// The close reads the position of a unit begun with WithReadAfter, the
	// commit forgives a replica's lost COMMIT. First, so that a caller's
	// WithCommit (VerifiedCommit) or WithClose replaces them, as the
	// core's options do.
	return scoped.New(f.create, append([]scoped.Option{scoped.WithCommit(f.commit), scoped.WithClose(f.close)}, core...)...)
}

// WithSetup adds f to the setup of every transaction of [NewTx]: f runs
// right after BEGIN, with the factory's context and the new transaction,
// and runs the statements that prepare it. Several WithSetup run in the
// order given, and stop at the first error. See NewTx for when it runs and
// what an error does.
//
//	setTenant := func(ctx context.Context, tx *sql.Tx) error {
//		tenant, ok := TenantFrom(ctx)
//		if !ok {
//			return errNoTenant // no statement of the unit runs
//		}
//		_, err := tx.ExecContext(ctx, "SELECT set_config('app.tenant_id', $1, true)", tenant)
//		return err
//	}
//	txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(setTenant))
func WithSetup(f func(ctx context.Context, tx *sql.Tx) error) Option {
	if f == nil {
		panic("scopedsql: WithSetup(nil)")
	}
	return txOption(func(c *txConfig) { c.setups = append(c.setups, f) })
}

// abandon rolls back tx, whose setup failed, and returns err with what
// the rollback said.
func abandon(tx *sql.Tx, err error) error {
	if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
		return errors.Join(err, fmt.Errorf("scopedsql: roll back after failed setup: %w", rerr))
	}
	return err
}
