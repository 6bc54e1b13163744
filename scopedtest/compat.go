package scopedtest

import (
	"context"
	"database/sql/driver"
	"errors"
)

// Calls into the real driver, through its context-aware interfaces when it
// has them, as database/sql's ctxutil.go does. Callers hold the lock.

func execDirect(ctx context.Context, c driver.Conn, query string, args ...driver.NamedValue) error {
	_, err := exec(ctx, c, query, args)
	if err == driver.ErrSkip {
		// The driver wants a prepared statement (go-sql-driver/mysql does
		// for arguments without interpolateParams).
		var s driver.Stmt
		if s, err = prepare(ctx, c, query); err == nil {
			_, err = stmtExec(ctx, s, args)
			err = errors.Join(err, s.Close())
		}
	}
	return err
}

func exec(ctx context.Context, c driver.Conn, query string, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := c.(driver.ExecerContext); ok {
		return e.ExecContext(ctx, query, args)
	}
	//lint:ignore SA1019 the pre-context interface, for old drivers
	if e, ok := c.(driver.Execer); ok {
		v, err := values(args)
		if err != nil {
			return nil, err
		}
		return e.Exec(query, v)
	}
	return nil, driver.ErrSkip
}

func query(ctx context.Context, c driver.Conn, query string, args []driver.NamedValue) (driver.Rows, error) {
	if q, ok := c.(driver.QueryerContext); ok {
		return q.QueryContext(ctx, query, args)
	}
	//lint:ignore SA1019 the pre-context interface, for old drivers
	if q, ok := c.(driver.Queryer); ok {
		v, err := values(args)
		if err != nil {
			return nil, err
		}
		return q.Query(query, v)
	}
	return nil, driver.ErrSkip
}

func prepare(ctx context.Context, c driver.Conn, query string) (driver.Stmt, error) {
	if p, ok := c.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return c.Prepare(query)
}

func stmtExec(ctx context.Context, s driver.Stmt, args []driver.NamedValue) (driver.Result, error) {
	if e, ok := s.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	v, err := values(args)
	if err != nil {
		return nil, err
	}
	//lint:ignore SA1019 the pre-context method, for old drivers
	return s.Exec(v)
}

func stmtQuery(ctx context.Context, s driver.Stmt, args []driver.NamedValue) (driver.Rows, error) {
	if q, ok := s.(driver.StmtQueryContext); ok {
		return q.QueryContext(ctx, args)
	}
	v, err := values(args)
	if err != nil {
		return nil, err
	}
	//lint:ignore SA1019 the pre-context method, for old drivers
	return s.Query(v)
}

func beginOuter(ctx context.Context, c driver.Conn) (driver.Tx, error) {
	if b, ok := c.(driver.ConnBeginTx); ok {
		return b.BeginTx(ctx, driver.TxOptions{})
	}
	//lint:ignore SA1019 the pre-context method, for old drivers
	return c.Begin()
}

// values turns arguments into the positional values of the old
// interfaces, which cannot take names.
func values(args []driver.NamedValue) ([]driver.Value, error) {
	v := make([]driver.Value, len(args))
	for i, a := range args {
		if a.Name != "" {
			return nil, errors.New("scopedtest: the driver does not support named parameters")
		}
		v[i] = a.Value
	}
	return v, nil
}
