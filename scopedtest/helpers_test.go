package scopedtest_test

import (
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
