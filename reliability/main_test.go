package reliability_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/lib/pq"
	"go.uber.org/goleak"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedtest"
)

// TestMain fails the package if any test leaves a goroutine behind. The
// MySQL driver's log of connections killed on purpose is silenced.
func TestMain(m *testing.M) {
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
	goleak.VerifyTestMain(scopedtest.CheckScopesM(m))
}

// pool is the *sql.DB under test. Every connection it opens goes through
// a connector hook that records the connection's server-side id, so that
// the test can kill exactly its own connections, and check exactly its own
// transactions, on a server that other test packages use at the same time.
type pool struct {
	*sql.DB
	srv   dbtest.Server
	app   string  // PostgreSQL application_name of the pool's connections
	admin *sql.DB // a separate small pool for kills and checks

	mu     sync.Mutex
	ids    map[int64]bool // server-side ids of every connection opened
	opened int
}

func openPool(t *testing.T, s dbtest.Server, size int) *pool {
	t.Helper()
	p := &pool{srv: s, app: dbtest.Table("scoped_reliability"), ids: map[int64]bool{}}
	var inner driver.Connector
	var err error
	switch s.Name {
	case "postgres":
		inner, err = pq.NewConnector(withAppName(s.DSN, p.app))
	case "mysql":
		var cfg *mysql.Config
		if cfg, err = mysql.ParseDSN(s.DSN); err == nil {
			inner, err = mysql.NewConnector(cfg)
		}
	default:
		err = fmt.Errorf("unknown server %q", s.Name)
	}
	if err != nil {
		t.Fatalf("%s: connector: %v", s.Name, err)
	}
	p.DB = sql.OpenDB(&trackingConnector{Connector: inner, p: p})
	p.SetMaxOpenConns(size)
	p.SetMaxIdleConns(size)
	t.Cleanup(func() { _ = p.Close() })
	if p.admin, err = sql.Open(s.Driver, s.DSN); err != nil {
		t.Fatal(err)
	}
	p.admin.SetMaxOpenConns(1) // one connection, opened now: no goroutine of it starts later
	t.Cleanup(func() { _ = p.admin.Close() })
	if err := p.PingContext(dbtest.Ctx(t)); err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	if err := p.admin.PingContext(dbtest.Ctx(t)); err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	return p
}

// withAppName adds application_name to a lib/pq DSN, URL or key=value.
func withAppName(dsn, app string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set("application_name", app)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " application_name=" + app
}

// trackingConnector records the server-side id of every new connection.
type trackingConnector struct {
	driver.Connector
	p *pool
}

func (c *trackingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	id, err := connID(ctx, conn, c.p.srv)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	c.p.mu.Lock()
	c.p.ids[id] = true
	c.p.opened++
	c.p.mu.Unlock()
	return conn, nil
}

func connID(ctx context.Context, conn driver.Conn, s dbtest.Server) (int64, error) {
	q, ok := conn.(driver.QueryerContext)
	if !ok {
		return 0, errors.New("the driver's connection cannot run a query")
	}
	query := "SELECT CONNECTION_ID()"
	if s.Name == "postgres" {
		query = "SELECT pg_backend_pid()"
	}
	rows, err := q.QueryContext(ctx, query, nil)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	v := make([]driver.Value, 1)
	if err := rows.Next(v); err != nil {
		return 0, err
	}
	switch x := v[0].(type) {
	case int64:
		return x, nil
	case uint64:
		return int64(x), nil
	case []byte:
		return strconv.ParseInt(string(x), 10, 64)
	case string:
		return strconv.ParseInt(x, 10, 64)
	}
	return 0, fmt.Errorf("connection id of type %T", v[0])
}

func (p *pool) known() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]int64, 0, len(p.ids))
	for id := range p.ids {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (p *pool) connectionsOpened() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opened
}

// alive returns the server-side ids of the pool's connections that the
// server still has.
func (p *pool) alive(ctx context.Context) ([]int64, error) {
	var rows *sql.Rows
	var err error
	if p.srv.Name == "postgres" {
		rows, err = p.admin.QueryContext(ctx, `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()`, p.app)
	} else {
		rows, err = p.admin.QueryContext(ctx, `SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()`)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	known := p.known()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		// On MariaDB the process list has every client of the server:
		// keep only the connections this pool opened.
		if _, mine := slices.BinarySearch(known, id); mine || p.srv.Name == "postgres" {
			ids = append(ids, id)
		}
	}
	return ids, rows.Err()
}

// kill terminates every server-side connection of the pool, and of this
// pool only, and waits until the server has let go of all of them.
func (p *pool) kill(ctx context.Context) (int, error) {
	ids, err := p.alive(ctx)
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		if p.srv.Name == "postgres" {
			_, err = p.admin.ExecContext(ctx, "SELECT pg_terminate_backend($1)", id)
		} else {
			_, err = p.admin.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatInt(id, 10))
			var me *mysql.MySQLError
			if errors.As(err, &me) && me.Number == 1094 { // unknown thread: it just went away
				err = nil
			}
		}
		if err != nil {
			return 0, fmt.Errorf("kill %d: %w", id, err)
		}
	}
	for {
		left, err := p.alive(ctx)
		if err != nil {
			return 0, err
		}
		if !slices.ContainsFunc(left, func(id int64) bool { return slices.Contains(ids, id) }) {
			return len(ids), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("connections %v still alive after kill: %w", left, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// openTransactions counts the pool's connections that hold an open
// transaction on the server: idle in transaction on PostgreSQL, an InnoDB
// transaction on MariaDB.
func (p *pool) openTransactions(ctx context.Context) (int, error) {
	if p.srv.Name == "postgres" {
		var n int
		err := p.admin.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND state LIKE 'idle in transaction%'`, p.app).Scan(&n)
		return n, err
	}
	rows, err := p.admin.QueryContext(ctx, "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX")
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	known := p.known()
	n := 0
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return 0, err
		}
		if _, mine := slices.BinarySearch(known, id); mine {
			n++
		}
	}
	return n, rows.Err()
}

// drain waits, bounded, until no connection of the pool is in use, and
// returns how many still are.
func (p *pool) drain() int {
	deadline := time.Now().Add(dbtest.Bound)
	for p.Stats().InUse != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return p.Stats().InUse
}

// createTable makes a fresh table for ids and drops it at the end.
func createTable(t *testing.T, p *pool, prefix string) string {
	t.Helper()
	name := dbtest.Table(prefix)
	if _, err := p.admin.ExecContext(dbtest.Ctx(t), "CREATE TABLE "+name+" (id BIGINT PRIMARY KEY, kind VARCHAR(16) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dbtest.Bound)
		defer cancel()
		if _, err := p.admin.ExecContext(ctx, "DROP TABLE "+name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return name
}

// sqlFor writes query with $n placeholders for PostgreSQL, ? for MariaDB.
func sqlFor(s dbtest.Server, query string) string {
	if s.Name == "postgres" {
		return query
	}
	for i := 9; i >= 1; i-- {
		query = strings.ReplaceAll(query, "$"+strconv.Itoa(i), "?")
	}
	return query
}

// rowIDs returns every id in table, counting duplicates.
func rowIDs(t *testing.T, p *pool, table string) map[int]int {
	t.Helper()
	rows, err := p.admin.QueryContext(dbtest.Ctx(t), "SELECT id FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	ids := map[int]int{}
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// report logs the figures of a run and, with SCOPED_RELIABILITY_REPORT
// set, appends them to that file as one line of JSON.
func report(t *testing.T, figures any) {
	t.Helper()
	b, err := json.Marshal(figures)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("figures: %s", b)
	path := os.Getenv("SCOPED_RELIABILITY_REPORT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	if _, err := io.WriteString(f, string(b)+"\n"); err != nil {
		t.Errorf("report: %v", err)
	}
}

// envInt reads a positive integer from the environment.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
