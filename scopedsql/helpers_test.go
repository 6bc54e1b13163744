package scopedsql_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
)

// upTo bounds every wait on a server, so that a broken test fails instead
// of hanging; no assertion depends on it.
const upTo = 30 * time.Second

func boundedCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), upTo)
	t.Cleanup(cancel)
	return ctx
}

// openDB opens s and closes it when t ends.
func openDB(t testing.TB, s dbtest.Server) *sql.DB {
	t.Helper()
	db, err := sql.Open(s.Driver, s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.PingContext(boundedCtx(t)); err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	return db
}

// createTable creates a fresh table (id BIGINT PRIMARY KEY) and drops it
// when t ends.
func createTable(t testing.TB, db *sql.DB, prefix string) string {
	t.Helper()
	name := dbtest.Table(prefix)
	if _, err := db.ExecContext(boundedCtx(t), "CREATE TABLE "+name+" (id BIGINT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), upTo)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP TABLE "+name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return name
}

// insert is the INSERT of id into table, in s's placeholder syntax.
func insert(s dbtest.Server, table string) string {
	if s.Name == "postgres" {
		return "INSERT INTO " + table + " (id) VALUES ($1)"
	}
	return "INSERT INTO " + table + " (id) VALUES (?)"
}

// backendQuery returns the server's id of the connection it runs on.
func backendQuery(s dbtest.Server) string {
	if s.Name == "postgres" {
		return "SELECT pg_backend_pid()"
	}
	return "SELECT CONNECTION_ID()"
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func backendID(t testing.TB, q queryer, s dbtest.Server) int64 {
	t.Helper()
	var id int64
	if err := q.QueryRowContext(boundedCtx(t), backendQuery(s)).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// ids returns the ids in table, ascending.
func ids(t testing.TB, db *sql.DB, table string) []int64 {
	t.Helper()
	rows, err := db.QueryContext(boundedCtx(t), "SELECT id FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// errorLog collects teardown errors instead of logging them.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) option() scoped.Option {
	return scoped.WithTeardownErrorHook(func(_ context.Context, err error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.errs = append(l.errs, err)
	})
}

func (l *errorLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

func wantInUse(t testing.TB, db *sql.DB, n int) {
	t.Helper()
	if got := db.Stats().InUse; got != n {
		t.Errorf("db.Stats().InUse = %d, want %d", got, n)
	}
}

func wantStats(t testing.TB, got, want scoped.Stats) {
	t.Helper()
	if got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}
