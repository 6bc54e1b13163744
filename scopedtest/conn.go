package scopedtest

import (
	"context"
	"database/sql/driver"
	"errors"
)

// conn is one connection of the isolated *sql.DB as database/sql sees it:
// a handle on the shared physical connection. database/sql opens as many
// as its callers need at once; they take turns on the physical one, one
// call at a time.
type conn struct {
	p  *physical
	tx *savepoint // this handle's open transaction; guarded by p.sem
}

var (
	_ driver.Conn               = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.SessionResetter    = (*conn)(nil)
	_ driver.Validator          = (*conn)(nil)
)

// do runs f on the physical connection: in the handle's transaction if it
// has one, else as a statement of its own (see physical.autocommit).
//
// ctx bounds the wait for the connection, not the call itself: f gets ctx
// without its cancellation. Drivers interrupt a cancelled statement by
// closing or poisoning the connection (lib/pq, go-sql-driver/mysql), which
// here would end the outer transaction of the whole test.
func (c *conn) do(ctx context.Context, f func(context.Context) error) error {
	if err := c.p.lock(ctx); err != nil {
		return err
	}
	defer c.p.unlock()
	if err := c.p.usable(); err != nil {
		return err
	}
	run := context.WithoutCancel(ctx)
	if c.tx != nil {
		return c.p.check(f(run))
	}
	return c.p.autocommit(func() error { return c.p.check(f(run)) })
}

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	var s driver.Stmt
	err := c.do(ctx, func(ctx context.Context) (err error) {
		s, err = prepare(ctx, c.p.conn, query)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &stmt{c: c, s: s}, nil
}

func (c *conn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	var res driver.Result
	err := c.do(ctx, func(ctx context.Context) (err error) {
		res, err = exec(ctx, c.p.conn, q, args)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (c *conn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return c.query(ctx, func(ctx context.Context) (driver.Rows, error) { return query(ctx, c.p.conn, q, args) })
}

// query runs f and reads its whole result. A result that fails part way
// still reaches the caller, with its error after the rows read, as it
// would from the driver.
func (c *conn) query(ctx context.Context, f func(context.Context) (driver.Rows, error)) (driver.Rows, error) {
	var r *rows
	err := c.do(ctx, func(ctx context.Context) error {
		dr, err := f(ctx)
		if err != nil {
			return err
		}
		r = readAll(dr)
		return r.failed()
	})
	if r == nil || errors.Is(err, ErrBroken) {
		return nil, err
	}
	return r, nil
}

// BeginTx opens a transaction as a savepoint inside the outer transaction.
// Its isolation level and read-only flag cannot apply to a savepoint and
// are ignored.
func (c *conn) BeginTx(ctx context.Context, _ driver.TxOptions) (driver.Tx, error) {
	if err := c.p.lock(ctx); err != nil {
		return nil, err
	}
	defer c.p.unlock()
	if err := c.p.usable(); err != nil {
		return nil, err
	}
	if c.tx != nil {
		return nil, errors.New("scopedtest: a transaction is already open on this connection")
	}
	sp, err := c.p.begin()
	if err != nil {
		return nil, err
	}
	c.tx = sp
	return &tx{c: c, sp: sp}, nil
}

func (c *conn) Begin() (driver.Tx, error) { return c.BeginTx(context.Background(), driver.TxOptions{}) }

// CheckNamedValue converts arguments as the real driver does (it may take
// types database/sql's default conversion refuses). Drivers implement it
// as a pure function of the value, so it runs without the lock.
func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.p.conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func (c *conn) Ping(ctx context.Context) error {
	if err := c.p.lock(ctx); err != nil {
		return err
	}
	defer c.p.unlock()
	if err := c.p.usable(); err != nil {
		return err
	}
	if p, ok := c.p.conn.(driver.Pinger); ok {
		return c.p.check(p.Ping(context.WithoutCancel(ctx)))
	}
	return nil
}

// ResetSession keeps the handle in database/sql's pool: there is no
// session of its own to reset, and the shared one must not be reset.
func (c *conn) ResetSession(context.Context) error {
	if c.p.brokenErr() != nil {
		return driver.ErrBadConn
	}
	return nil
}

func (c *conn) IsValid() bool { return c.p.brokenErr() == nil }

// Close drops the handle. A transaction still open on it (database/sql
// closes a connection only after its transaction, so this is defensive)
// is rolled back.
func (c *conn) Close() error {
	_ = c.p.lock(context.Background())
	defer c.p.unlock()
	if c.tx == nil || c.p.usable() != nil {
		return nil
	}
	sp := c.tx
	c.tx = nil
	return c.p.rollback(sp)
}

// tx is a user transaction: a savepoint.
type tx struct {
	c  *conn
	sp *savepoint
}

func (t *tx) Commit() error   { return t.end(true) }
func (t *tx) Rollback() error { return t.end(false) }

func (t *tx) end(commit bool) error {
	p := t.c.p
	_ = p.lock(context.Background())
	defer p.unlock()
	if t.c.tx != t.sp {
		return errors.New("scopedtest: transaction already ended")
	}
	t.c.tx = nil
	if err := p.usable(); err != nil {
		return err
	}
	if commit {
		return p.commit(t.sp)
	}
	return p.rollback(t.sp)
}
