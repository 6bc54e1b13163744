package scopedtest_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/go-scoped/scoped/internal/dbtest"
)

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

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// ids returns the ids in table, ascending, as q sees them.
func ids(t testing.TB, q queryer, table string) []int64 {
	t.Helper()
	rows, err := q.QueryContext(dbtest.Ctx(t), "SELECT id FROM "+table+" ORDER BY id")
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
