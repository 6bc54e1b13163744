package scopedtest_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

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

// plainDB opens s without isolation and closes it when t ends.
func plainDB(t testing.TB, s dbtest.Server) *sql.DB {
	t.Helper()
	db, err := sql.Open(s.Driver, s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// createTable creates a fresh table (id BIGINT PRIMARY KEY), outside any
// isolated database, and drops it when t ends.
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

func insert(s dbtest.Server, table string) string {
	if s.Name == "postgres" {
		return "INSERT INTO " + table + " (id) VALUES ($1)"
	}
	return "INSERT INTO " + table + " (id) VALUES (?)"
}

func backendQuery(s dbtest.Server) string {
	if s.Name == "postgres" {
		return "SELECT pg_backend_pid()"
	}
	return "SELECT CONNECTION_ID()"
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// ids returns the ids in table, ascending, as q sees them.
func ids(t testing.TB, q queryer, table string) []int64 {
	t.Helper()
	rows, err := q.QueryContext(boundedCtx(t), "SELECT id FROM "+table+" ORDER BY id")
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
