package testkit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"sync"
)

// NoopDB opens a *sql.DB on a driver whose connections begin and end
// transactions without doing anything, so that benchmarks and allocation
// tests measure database/sql and this repository's code, not a server.
// Its connections implement the optional interfaces real drivers do
// (ConnBeginTx, SessionResetter, Validator), which change database/sql's
// paths.
func NoopDB() *sql.DB {
	registerNoop()
	db, err := sql.Open(noopDriverName, "")
	if err != nil {
		panic(err)
	}
	return db
}

const noopDriverName = "scoped-testkit-noop"

var registerNoop = sync.OnceFunc(func() { sql.Register(noopDriverName, noopDriver{}) })

type noopDriver struct{}

func (noopDriver) Open(string) (driver.Conn, error) { return noopConn{}, nil }

type noopConn struct{}

func (noopConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("noop: no statements") }
func (noopConn) Close() error                        { return nil }
func (noopConn) Begin() (driver.Tx, error)           { return noopTx{}, nil }
func (noopConn) BeginTx(context.Context, driver.TxOptions) (driver.Tx, error) {
	return noopTx{}, nil
}
func (noopConn) ResetSession(context.Context) error { return nil }
func (noopConn) IsValid() bool                      { return true }

type noopTx struct{}

func (noopTx) Commit() error   { return nil }
func (noopTx) Rollback() error { return nil }
