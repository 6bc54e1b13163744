package scopedsql

import (
	"reflect"
)

// Retryable reports whether err (or an error it wraps) says that the
// database aborted the transaction only because it collided with another
// one, so that running the whole unit of work again may succeed: a
// serialization failure or a deadlock. It is the classifier for
// scoped.WithRetry:
//
//	err := scoped.Run(ctx, transfer, scoped.WithRetry(5, scopedsql.Retryable))
//
// It recognises PostgreSQL's SQLSTATE 40001 (serialization_failure) and
// 40P01 (deadlock_detected), from github.com/lib/pq (*pq.Error) and from
// pgx (*pgconn.PgError, through database/sql or not), and MySQL/MariaDB's
// error 1213 (ER_LOCK_DEADLOCK, also what Galera reports for a
// certification conflict) from github.com/go-sql-driver/mysql
// (*mysql.MySQLError). Any other driver whose errors have a
// SQLState() string method is recognised by the same two SQLSTATEs. A lock
// wait timeout (MySQL 1205, PostgreSQL 55P03) is not retryable: it is a
// timeout, and retrying it holds the request longer.
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
		return n.IsValid() && n.CanUint() && n.Uint() == 1213
	case t.Name() == "Error" && t.PkgPath() == "github.com/lib/pq":
		// lib/pq releases before SQLState() was added: the Code field.
		c := v.FieldByName("Code")
		return c.IsValid() && c.Kind() == reflect.String && retryableState(c.String())
	}
	return false
}

func retryableState(s string) bool { return s == "40001" || s == "40P01" }

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
