package scopedsql_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"sync"
)

// fakeDriver is a database/sql driver that only connects and pings, and
// counts the connections open per DSN, so that tests of Open and Close can
// see what was opened and whether it was closed. A DSN containing
// "unreachable" fails to ping; one containing "silent" pings until the
// context is done.
type fakeDriver struct {
	mu     sync.Mutex
	open   map[string]int // connections open now
	opened map[string]int // connections ever opened
}

const fakeDriverName = "scopedsql-fake"

var errUnreachable = errors.New("fake: server unreachable")

var fake = sync.OnceValue(func() *fakeDriver {
	d := &fakeDriver{open: map[string]int{}, opened: map[string]int{}}
	sql.Register(fakeDriverName, d)
	return d
})

func (d *fakeDriver) Open(dsn string) (driver.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.open[dsn]++
	d.opened[dsn]++
	return &fakeConn{d: d, dsn: dsn}, nil
}

// counts returns the open and ever opened connections of dsn.
func (d *fakeDriver) counts(dsn string) (open, opened int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.open[dsn], d.opened[dsn]
}

type fakeConn struct {
	d   *fakeDriver
	dsn string
}

func (c *fakeConn) Ping(ctx context.Context) error {
	switch {
	case strings.Contains(c.dsn, "unreachable"):
		return errUnreachable
	case strings.Contains(c.dsn, "silent"):
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (c *fakeConn) Close() error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	c.d.open[c.dsn]--
	return nil
}

func (c *fakeConn) Prepare(string) (driver.Stmt, error) {
	return nil, errors.New("fake: no statements")
}
func (c *fakeConn) Begin() (driver.Tx, error) { return nil, errors.New("fake: no transactions") }
