package scopedsql

import (
	"reflect"
)

// Retryable reports whether err (or an error it wraps) says that the
// database aborted the transaction, or the statement, only because it
// collided with another one, so that running the whole unit of work again
// may succeed. It is the classifier for scoped.WithRetry and for the
// WithRetry of scopedhttp, scopedgrpc and scopedconnect:
//
//	err := scoped.Run(ctx, transfer, scoped.WithRetry(5, scopedsql.Retryable))
//
// It accepts:
//   - SQLSTATE 40001 (serialization_failure) and 40P01
//     (deadlock_detected), from PostgreSQL and from CockroachDB, whose
//     transaction restarts (RETRY_SERIALIZABLE, RETRY_WRITE_TOO_OLD, ...,
//     often reported at COMMIT) are all 40001; through lib/pq (*pq.Error)
//     and pgx (*pgconn.PgError, through database/sql or not), or any
//     driver whose errors have a SQLState() string method;
//   - MySQL/MariaDB error 1213 (ER_LOCK_DEADLOCK, also what Galera reports
//     for a certification conflict and TiDB for a deadlock of pessimistic
//     transactions) and TiDB's 9007 (write conflict of an optimistic
//     transaction, reported at COMMIT), from github.com/go-sql-driver/mysql
//     (*mysql.MySQLError);
//   - MySQL/MariaDB error 1205 (ER_LOCK_WAIT_TIMEOUT), see below.
//
// A lock wait timeout, with InnoDB's default innodb_rollback_on_timeout=OFF,
// rolls back the statement only: the transaction is still open, so even
// code that swallowed the error and went on stayed inside it, nothing
// was saved, and running the unit again after its rollback is safe. The
// error does not say how the server is configured: Retryable decides for
// the default. With innodb_rollback_on_timeout=ON the server has rolled
// back the whole transaction, as after a deadlock, and what code that
// swallowed the error runs afterwards on that connection is committed
// statement by statement (autocommit): a retry would run it twice. On
// such a server, unless the code always stops at the error, leave 1205
// out:
//
//	func(err error) bool {
//		var me *mysql.MySQLError
//		return scopedsql.Retryable(err) && !(errors.As(err, &me) && me.Number == 1205)
//	}
//
// It never accepts CockroachDB's 40003 (statement_completion_unknown, an
// ambiguous result): the work may have been saved, and the commit of a
// scope reports it with scoped.ErrCommitUnknown. PostgreSQL's lock
// timeout (55P03, lock_timeout or NOWAIT) is not accepted either: it is
// what the application asked for, not a collision the server resolved.
//
// The drivers' error types are matched without importing the drivers, so
// that this package never links a driver (nor registers one: each of them
// registers itself in init) into a program that uses another: through a
// SQLState() string method (lib/pq, pgx and others), and for
// go-sql-driver/mysql, whose *MySQLError has no method for its number, by
// its exported Number field, found by reflection on that one type.
func Retryable(err error) bool {
	found := false
	walk(err, func(e error) bool {
		found = retryableOne(e)
		return found
	})
	return found
}

func retryableOne(e error) bool {
	if st, ok := e.(interface{ SQLState() string }); ok {
		return retryableState(st.SQLState())
	}
	v := reflect.ValueOf(e)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return false
	}
	switch t := v.Type(); {
	case t.Name() == "MySQLError" && t.PkgPath() == "github.com/go-sql-driver/mysql":
		n := v.FieldByName("Number")
		return n.IsValid() && n.CanUint() && retryableNumber(n.Uint())
	case t.Name() == "Error" && t.PkgPath() == "github.com/lib/pq":
		// lib/pq releases before SQLState() was added: the Code field.
		c := v.FieldByName("Code")
		return c.IsValid() && c.Kind() == reflect.String && retryableState(c.String())
	}
	return false
}

func retryableState(s string) bool { return s == "40001" || s == "40P01" }

// retryableNumber: MySQL/MariaDB deadlock (1213) and lock wait timeout
// (1205), TiDB write conflict (9007).
func retryableNumber(n uint64) bool { return n == 1213 || n == 1205 || n == 9007 }

// walk calls f on err and every error it wraps, depth first, until f
// returns true.
func walk(err error, f func(error) bool) bool {
	for err != nil {
		if f(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if walk(e, f) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
