package scopedtest

import (
	"context"
	"database/sql/driver"
)

// stmt is a statement prepared on the physical connection, run through the
// handle that prepared it so that it joins that handle's transaction.
type stmt struct {
	c *conn
	s driver.Stmt
}

var (
	_ driver.Stmt              = (*stmt)(nil)
	_ driver.StmtExecContext   = (*stmt)(nil)
	_ driver.StmtQueryContext  = (*stmt)(nil)
	_ driver.NamedValueChecker = (*stmt)(nil)
)

func (s *stmt) NumInput() int { return s.s.NumInput() }

func (s *stmt) Close() error {
	p := s.c.p
	_ = p.lock(context.Background())
	defer p.unlock()
	if p.usable() != nil {
		return nil // the connection and its statements are gone
	}
	return p.check(s.s.Close())
}

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	var res driver.Result
	err := s.c.do(ctx, func(ctx context.Context) (err error) {
		res, err = stmtExec(ctx, s.s, args)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.c.query(ctx, func(ctx context.Context) (driver.Rows, error) { return stmtQuery(ctx, s.s, args) })
}

func (s *stmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), named(args))
}

func (s *stmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), named(args))
}

// CheckNamedValue converts arguments as the real statement does, or else
// as the real connection does (see conn.CheckNamedValue).
func (s *stmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.s.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return s.c.CheckNamedValue(nv)
}

func named(args []driver.Value) []driver.NamedValue {
	nv := make([]driver.NamedValue, len(args))
	for i, v := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return nv
}
