package scopedtest

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"testing"
	"time"
)

// setupTimeout bounds connecting and beginning the outer transaction, so
// that an unreachable server fails the test instead of hanging it.
const setupTimeout = 30 * time.Second

// IsolatedDB returns a *sql.DB for one test whose every change is rolled
// back when the test ends. It opens one connection to dsn with the
// registered driver driverName, begins a transaction on it, and serves
// every statement of the returned *sql.DB inside that transaction, where
// transactions are savepoints. The transaction is rolled back and the
// connection closed by t.Cleanup; the returned *sql.DB is closed there too.
//
// Any number of scopes, transactions and goroutines may use the database;
// see the package documentation for what sharing one connection means for
// transactions that overlap. IsolatedDB calls t.Fatal if it cannot
// connect.
func IsolatedDB(t testing.TB, driverName, dsn string) *sql.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	p, err := connect(ctx, driverName, dsn)
	if err != nil {
		t.Fatalf("scopedtest: IsolatedDB(%q): %v", driverName, err)
	}
	db := sql.OpenDB(&connector{p: p})
	t.Cleanup(func() {
		if err := p.brokenErr(); err != nil {
			t.Errorf("scopedtest: the isolated database broke during the test; "+
				"what was written before may not have been rolled back: %v", err)
		}
		if err := errors.Join(db.Close(), p.close()); err != nil {
			t.Errorf("scopedtest: ending the isolated database: %v", err)
		}
	})
	return db
}

// connect opens the physical connection and its outer transaction,
// through the driver's own Connector when it has one, as sql.Open would.
func connect(ctx context.Context, driverName, dsn string) (*physical, error) {
	probe, err := sql.Open(driverName, dsn) // only to find the registered driver
	if err != nil {
		return nil, err
	}
	drv := probe.Driver()
	if err := probe.Close(); err != nil {
		return nil, err
	}
	var c driver.Conn
	if dc, ok := drv.(driver.DriverContext); ok {
		var conn driver.Connector
		if conn, err = dc.OpenConnector(dsn); err == nil {
			c, err = conn.Connect(ctx)
		}
	} else {
		c, err = drv.Open(dsn)
	}
	if err != nil {
		return nil, err
	}
	// Begun without ctx's cancellation: drivers watch the begin context
	// for as long as the transaction lasts, and this one lasts the test.
	outer, err := beginOuter(context.WithoutCancel(ctx), c)
	if err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return newPhysical(c, outer), nil
}

// connector hands database/sql a new handle on the one physical
// connection whenever it wants a connection.
type connector struct{ p *physical }

func (c *connector) Connect(context.Context) (driver.Conn, error) {
	if err := c.p.brokenErr(); err != nil {
		return nil, err
	}
	return &conn{p: c.p}, nil
}

func (c *connector) Driver() driver.Driver { return isolatedDriver{c} }

// isolatedDriver is what [sql.DB.Driver] returns for an isolated database:
// connections it opens are handles on the same physical connection.
type isolatedDriver struct{ c *connector }

func (d isolatedDriver) Open(string) (driver.Conn, error) { return d.c.Connect(context.Background()) }
