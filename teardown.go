package scoped

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"reflect"
)

// teardown holds how sessions of one type end. Each func may be nil.
type teardown[S any] struct {
	commit, rollback, close func(context.Context, S) error
}

// The interfaces a session type is upgraded through, the way database/sql
// detects optional driver capabilities.
type (
	// ctxTx is a pgx-style transaction: pgx.Tx, or anything with the same shape.
	ctxTx interface {
		Commit(ctx context.Context) error
		Rollback(ctx context.Context) error
	}
	// plainTx is a database/sql-style transaction: *sql.Tx, *sqlx.Tx.
	plainTx interface {
		Commit() error
		Rollback() error
	}
	// releaser is a pooled connection that goes back with Release, like *pgxpool.Conn.
	releaser interface{ Release() }
)

// defaultTeardown detects, once per ScopedSession, how sessions of type S end.
func defaultTeardown[S any]() teardown[S] {
	var td teardown[S]
	t := reflect.TypeFor[S]()
	switch {
	case t.Implements(reflect.TypeFor[ctxTx]()):
		td.commit = func(ctx context.Context, s S) error { return any(s).(ctxTx).Commit(ctx) }
		td.rollback = func(ctx context.Context, s S) error { return any(s).(ctxTx).Rollback(ctx) }
	case t.Implements(reflect.TypeFor[plainTx]()):
		td.commit = func(_ context.Context, s S) error { return any(s).(plainTx).Commit() }
		td.rollback = func(_ context.Context, s S) error {
			// A transaction its user already committed or rolled back by hand
			// has nothing left to undo, and neither has one whose connection
			// the driver found broken (as after a query cancelled when its
			// client went away): the server aborts the transaction of a
			// session that ends. Other failures stay loud.
			// A context error is never the rollback's own either (Rollback
			// takes none): go-sql-driver/mysql returns the cancelled
			// statement's error for every later call on the connection it
			// closed.
			err := any(s).(plainTx).Rollback()
			if errors.Is(err, sql.ErrTxDone) || errors.Is(err, driver.ErrBadConn) ||
				errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil
			}
			return err
		}
	}
	switch {
	case t.Implements(reflect.TypeFor[io.Closer]()):
		td.close = func(_ context.Context, s S) error { return any(s).(io.Closer).Close() }
	case t.Implements(reflect.TypeFor[releaser]()):
		td.close = func(_ context.Context, s S) error { any(s).(releaser).Release(); return nil }
	}
	return td
}
