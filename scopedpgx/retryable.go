package scopedpgx

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// Retryable reports whether err says that the server gave up a
// transaction that would succeed if run again from the start: a
// serialization failure (SQLSTATE 40001, which SERIALIZABLE and
// REPEATABLE READ transactions get, often at COMMIT, and which is every
// CockroachDB transaction restart, RETRY_SERIALIZABLE, RETRY_WRITE_TOO_OLD
// and the others, at a statement or at COMMIT) or a deadlock (40P01). It
// is the classifier for retrying a whole unit of work (scoped.WithRetry,
// and the WithRetry of scopedhttp, scopedgrpc and scopedconnect), never
// a single statement: the transaction is aborted by then.
//
// It never accepts CockroachDB's 40003 (statement_completion_unknown, an
// ambiguous result): the work may have been saved, and a commit that
// fails so is reported with scoped.ErrCommitUnknown.
func Retryable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == "40001" || pgErr.Code == "40P01"
}

// completionUnknown reports whether the server said it does not know
// whether the statement (COMMIT) took effect: SQLSTATE 40003,
// statement_completion_unknown, CockroachDB's ambiguous result.
func completionUnknown(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40003"
}
