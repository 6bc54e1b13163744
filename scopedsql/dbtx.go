package scopedsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/go-scoped/scoped"
)

// DBTX serves the interface sqlc generates for database/sql (also named
// DBTX: ExecContext, PrepareContext, QueryContext, QueryRowContext) from
// the scope's transaction inside a scope and from the pool outside one, so
// that one *Queries serves both:
//
//	txs := scoped.New(scopedsql.Tx(db, nil))
//	queries := sqlcdb.New(scopedsql.NewDBTX(db, txs)) // sqlcdb: your generated package
//
// Each call looks at its context: inside a scope, the statement runs in
// the scope's transaction (begun on first use, as txs.Current does); with
// no scope in the context ([scoped.ErrNoScope]), it runs on db, each
// statement on its own, as *sql.DB runs it.
//
// When the scope's transaction cannot be had (its BEGIN failed, the scope
// has ended), nothing runs anywhere, and the error is returned: by Exec,
// Query and Prepare directly, and by the Scan (or Err) of the *sql.Row of
// QueryRowContext. A statement never falls back to the pool inside a
// scope: it would escape the transaction.
type DBTX struct {
	db  *sql.DB
	txs *scoped.ScopedSession[*sql.Tx]
}

// NewDBTX returns a DBTX over db and txs, whose transactions must be
// begun on db.
func NewDBTX(db *sql.DB, txs *scoped.ScopedSession[*sql.Tx]) *DBTX {
	if db == nil || txs == nil {
		panic("scopedsql: NewDBTX with nil *sql.DB or ScopedSession")
	}
	return &DBTX{db: db, txs: txs}
}

// runner is what both *sql.DB and *sql.Tx offer.
type runner interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (d *DBTX) pick(ctx context.Context) (runner, error) {
	tx, err := d.txs.Current(ctx)
	switch {
	case err == nil:
		return tx, nil
	case errors.Is(err, scoped.ErrNoScope):
		return d.db, nil
	}
	return nil, fmt.Errorf("scopedsql: no transaction for the statement, nothing ran: %w", err)
}

// ExecContext runs query in the scope's transaction, or on the pool
// outside a scope.
func (d *DBTX) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	r, err := d.pick(ctx)
	if err != nil {
		return nil, err
	}
	return r.ExecContext(ctx, query, args...)
}

// PrepareContext prepares query on the scope's transaction (the statement
// belongs to it and ends with it), or on the pool outside a scope.
func (d *DBTX) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	r, err := d.pick(ctx)
	if err != nil {
		return nil, err
	}
	return r.PrepareContext(ctx, query)
}

// QueryContext runs query in the scope's transaction, or on the pool
// outside a scope.
func (d *DBTX) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	r, err := d.pick(ctx)
	if err != nil {
		return nil, err
	}
	return r.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query in the scope's transaction, or on the pool
// outside a scope. If there is no transaction to run it in, the returned
// row's Scan returns why.
func (d *DBTX) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	r, err := d.pick(ctx)
	if err != nil {
		return errRow(ctx, err)
	}
	return r.QueryRowContext(ctx, query, args...)
}

// errRow returns a *sql.Row whose Scan returns err. database/sql has no
// constructor for one, so a throwaway DB whose only connection fails every
// query with err makes it; it is closed before returning (its Row keeps
// the error, not the DB). This runs only on the failure path.
func errRow(ctx context.Context, err error) *sql.Row {
	db := sql.OpenDB(errConnector{err})
	defer db.Close()
	return db.QueryRowContext(context.WithoutCancel(ctx), "")
}

type errConnector struct{ err error }

func (c errConnector) Connect(context.Context) (driver.Conn, error) { return errConn(c), nil }
func (c errConnector) Driver() driver.Driver                        { return errDriver{} }

type errDriver struct{}

func (errDriver) Open(string) (driver.Conn, error) { return nil, errors.New("scopedsql: not a driver") }

type errConn struct{ err error }

func (c errConn) QueryContext(context.Context, string, []driver.NamedValue) (driver.Rows, error) {
	return nil, c.err
}
func (c errConn) Prepare(string) (driver.Stmt, error) { return nil, c.err }
func (c errConn) Close() error                        { return nil }
func (c errConn) Begin() (driver.Tx, error)           { return nil, c.err }
