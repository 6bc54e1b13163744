package scopedsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/xact"
)

// VerifiedCommit returns a scoped.Option for a ScopedSession of *sql.Tx
// on PostgreSQL whose commits never leave the caller guessing: when the
// connection is lost during COMMIT, the outcome is asked of the server on
// another connection of db instead of being reported as a failure that may
// have been a success.
//
//	txs := scoped.New(scopedsql.Tx(db, nil), scopedsql.VerifiedCommit(db))
//
// It costs one round trip per commit: before COMMIT it reads the
// transaction's id and when it began (pg_current_xact_id_if_assigned()
// and now(), PostgreSQL 13 or later). It is for PostgreSQL only; with
// other servers the commit fails at that read, and the transaction is
// rolled back. The outcomes:
//
//   - COMMIT succeeds: nil.
//   - COMMIT fails with an answer from the server (a serialization failure
//     at commit, a deferred constraint): that error; nothing was saved.
//   - COMMIT fails because the connection was lost: the transaction's
//     status is asked on another connection of db (pg_xact_status), again
//     while it is still in progress, for at most the resolve timeout
//     ([ResolveTimeout], default [DefaultResolveTimeout], and no longer
//     than the context allows). Committed: nil. Aborted, or an id the
//     restarted server has forgotten: an error, nothing was saved. Still
//     unknown (the server unreachable, restarting, or the id too old): an
//     error wrapping [scoped.ErrCommitUnknown], since the changes may have
//     been saved. After a crash the server hands out again the ids of
//     transactions that never reached its disk, so "committed" is trusted
//     only if the server has not checkpointed since the transaction began
//     (crash recovery ends in a checkpoint); otherwise the answer is
//     ErrCommitUnknown too. That question uses pg_control_checkpoint(),
//     which PostgreSQL lets every role call unless revoked.
//   - A transaction that wrote nothing has no id and nothing to resolve:
//     its commit had nothing to save, and a lost connection is no error.
//
// What it cannot see: a failover to an asynchronous replica that had not
// received the commit (the new primary says aborted, or does not know the
// id, while the old one had committed), and the application itself dying
// between COMMIT and its response. For those, idempotency keys checked in
// the same transaction are the end-to-end answer.
func VerifiedCommit(db *sql.DB, opts ...VerifyOption) scoped.Option {
	if db == nil {
		panic("scopedsql: VerifiedCommit with nil *sql.DB")
	}
	cfg := verifyConfig{timeout: DefaultResolveTimeout}
	for _, o := range opts {
		o.apply(&cfg)
	}
	return scoped.WithCommit(func(ctx context.Context, tx *sql.Tx) error {
		return commitVerified(ctx, db, tx, cfg)
	})
}

// DefaultResolveTimeout bounds how long a commit whose connection was lost
// waits to learn its outcome. A restarting server took 1.6 to 2.5 s to
// answer on this project's measurements.
const DefaultResolveTimeout = 5 * time.Second

// A VerifyOption configures [VerifiedCommit].
type VerifyOption interface{ apply(*verifyConfig) }

type verifyConfig struct{ timeout time.Duration }

type verifyOptionFunc func(*verifyConfig)

func (f verifyOptionFunc) apply(c *verifyConfig) { f(c) }

// ResolveTimeout sets how long a commit whose connection was lost keeps
// asking the server for its outcome before it reports it unknown.
func ResolveTimeout(d time.Duration) VerifyOption {
	if d <= 0 {
		panic("scopedsql: ResolveTimeout must be positive")
	}
	return verifyOptionFunc(func(c *verifyConfig) { c.timeout = d })
}

// resolvePoll is the pause between two questions about a transaction
// still in progress (its COMMIT not yet processed, or its backend not yet
// aware that its client is gone).
const resolvePoll = 20 * time.Millisecond

func commitVerified(ctx context.Context, db *sql.DB, tx *sql.Tx, cfg verifyConfig) error {
	var xid, began sql.NullString
	if err := tx.QueryRowContext(ctx, xact.ReadSQL).Scan(&xid, &began); err != nil {
		// Without its id the outcome of the COMMIT could not be verified:
		// roll back, so that the failure this returns saved nothing. A
		// COMMIT here would save the work on a server where a failed
		// statement leaves the transaction open (MariaDB, MySQL), while
		// the error says nothing was.
		return errors.Join(fmt.Errorf("scopedsql: VerifiedCommit (PostgreSQL 13 or later only) could not read the transaction's id before COMMIT, rolled back: %w", err), tx.Rollback())
	}
	err := tx.Commit()
	switch {
	case err == nil:
		return nil
	case !connectionLost(err):
		return err // the server answered: nothing was saved
	case !xid.Valid:
		return nil // wrote nothing: nothing to save, nothing lost
	}
	return resolve(ctx, db, xid.String, began.String, err, cfg.timeout)
}

// resolve asks db whether transaction xid, begun at began and whose
// COMMIT lost its connection with commitErr, committed, until it knows or
// timeout has passed. See shared/xact for what an answer proves after a
// crash.
func resolve(ctx context.Context, db *sql.DB, xid, began string, commitErr error, timeout time.Duration) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if d, ok := ctx.Deadline(); ok {
		var c2 context.CancelFunc
		rctx, c2 = context.WithDeadline(rctx, d)
		defer c2()
	}
	var last error
	for {
		var status sql.NullString
		var checkpointed bool
		qerr := db.QueryRowContext(rctx, xact.StatusSQL, xid, began).Scan(&status, &checkpointed)
		if qerr == nil {
			var st *string
			if status.Valid {
				st = &status.String
			}
			verdict, why := xact.Of(st, checkpointed)
			switch verdict {
			case xact.Committed:
				return nil
			case xact.Aborted:
				return fmt.Errorf("scopedsql: COMMIT lost its connection and the server aborted transaction %s: nothing was saved: %w",
					xid, commitErr)
			case xact.Unknown:
				return fmt.Errorf("scopedsql: COMMIT lost its connection and %s (transaction %s): %w: %w",
					why, xid, scoped.ErrCommitUnknown, commitErr)
			}
			last = fmt.Errorf("transaction %s still %s", xid, status.String)
		} else if xact.Forgotten(qerr) {
			return fmt.Errorf("scopedsql: COMMIT lost its connection and the server, restarted, has forgotten transaction %s: nothing was saved: %w",
				xid, commitErr)
		} else {
			last = qerr
		}
		t := time.NewTimer(resolvePoll)
		select {
		case <-rctx.Done():
			t.Stop()
			return fmt.Errorf("scopedsql: COMMIT lost its connection and its outcome was not learnt within %v (%v): %w: %w",
				timeout, last, scoped.ErrCommitUnknown, commitErr)
		case <-t.C:
		}
	}
}
