package scoped

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"reflect"
	"time"

	"github.com/go-scoped/scoped/internal/sqlconn"
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
		td.commit = func(_ context.Context, s S) error { return commitLost(any(s).(plainTx).Commit()) }
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
	case t == reflect.TypeFor[*sql.Conn]():
		td.close = func(ctx context.Context, s S) error { return closeConn(ctx, any(s).(*sql.Conn)) }
	case t.Implements(reflect.TypeFor[io.Closer]()):
		td.close = func(_ context.Context, s S) error { return any(s).(io.Closer).Close() }
	case t.Implements(reflect.TypeFor[releaser]()):
		td.close = func(_ context.Context, s S) error { any(s).(releaser).Release(); return nil }
	}
	return td
}

// closeConn is the default teardown of a pinned *sql.Conn. Not Close,
// which waits for an unclosed *sql.Rows or a *sql.Tx begun on the
// connection, and database/sql ends those only when their context is
// done: never, for context.Background, and for a request's, only after
// its handler returned, that is after the scope's end. A connection found
// in use is discarded instead (internal/sqlconn), and the error says what
// was left open.
//
// Unless the scope's context has ended: then the safety net (or a Remove
// after the client left) finds the query that the cancellation is
// stopping, or a Rows that database/sql is closing, still on the
// connection. Discarding it is the cost of not waiting; reporting it would
// blame the user's code for a client that went away.
func closeConn(ctx context.Context, c *sql.Conn) error {
	err := sqlconn.Close(c)
	if err != nil && errors.Is(err, sqlconn.ErrInUse) {
		if s := scopeFrom(ctx); s != nil && s.parentCtx.Err() != nil {
			return nil
		}
	}
	return err
}

type teardownOverride struct {
	set bool
	fn  any
	via string // the option's name, for the panic message
}

// WithCommit overrides how a session is committed by [Scope.Commit] and
// [ScopedSession.Commit]. nil makes sessions not committable: they are
// rolled back or closed instead. S must be the session type of the
// [ScopedSession]; New panics otherwise.
func WithCommit[S any](f func(ctx context.Context, s S) error) Option {
	return teardownOption[S]("WithCommit", f, func(c *config) *teardownOverride { return &c.commit })
}

// WithRollback overrides how a session that is not committed is rolled
// back when its scope ends. nil means there is nothing to roll back.
func WithRollback[S any](f func(ctx context.Context, s S) error) Option {
	return teardownOption[S]("WithRollback", f, func(c *config) *teardownOverride { return &c.rollback })
}

// WithClose overrides how a session is closed after its commit or
// rollback (for example [database/sql.Conn.Close]). nil means there is
// nothing to close.
func WithClose[S any](f func(ctx context.Context, s S) error) Option {
	return teardownOption[S]("WithClose", f, func(c *config) *teardownOverride { return &c.close })
}

func teardownOption[S any](via string, f func(context.Context, S) error, field func(*config) *teardownOverride) Option {
	return optionFunc(func(c *config) {
		*field(c) = teardownOverride{set: true, fn: f, via: fmt.Sprintf("%s[%v]", via, reflect.TypeFor[S]())}
	})
}

// resolve turns an override into a function of the session type, or
// keeps the default when the option was not given.
func resolve[S any](o teardownOverride, def func(context.Context, S) error) func(context.Context, S) error {
	if !o.set {
		return def
	}
	f, ok := o.fn.(func(context.Context, S) error)
	if !ok {
		panic(fmt.Sprintf("scoped: %s given to a ScopedSession[%v]", o.via, reflect.TypeFor[S]()))
	}
	return f
}

// WithTeardownTimeout bounds how long ending one session (its commit or
// rollback, then its close) may hold the caller: the teardown gets a
// context with that deadline, and past it the caller stops waiting and
// gets an error wrapping [ErrTeardownTimeout] (for a commit, also
// [ErrCommitUnknown]: the commit may still land). pgx honours the deadline
// (it closes the connection); database/sql's Commit and Rollback take no
// context, so for them the teardown goes on, on a goroutine of its own,
// until the driver returns, holding its connection, and its late outcome
// reaches the teardown error hook. Bound those at the driver too:
// go-sql-driver/mysql's readTimeout and writeTimeout DSN parameters; for
// lib/pq, which has none, a pq.NewConnector whose dialer sets TCP
// keepalives and TCP_USER_TIMEOUT (which end connections to a dead peer,
// not to a live proxy that stops answering).
//
// The default is no bound, which costs nothing; with a bound, each end
// costs a goroutine and a timer. d <= 0 means no bound.
func WithTeardownTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.timeout = d })
}
