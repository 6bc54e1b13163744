package scopedpgx

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// Retryable reports whether err says that PostgreSQL gave up a
// transaction that would succeed if run again from the start: a
// serialization failure (SQLSTATE 40001, which SERIALIZABLE and
// REPEATABLE READ transactions get, often at COMMIT) or a deadlock
// (40P01). It is the classifier for retrying a whole unit of work, never
// a single statement: the transaction is aborted by then.
func Retryable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == "40001" || pgErr.Code == "40P01"
}
