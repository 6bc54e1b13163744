package scoped_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	_ "github.com/go-sql-driver/mysql" // "mysql" driver
	_ "github.com/lib/pq"              // "postgres" driver

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// Issue 20 item 9: the default teardown of a *sql.Conn session, whatever
// factory made it, never waits for what the scope's code left open on the
// connection. (*sql.Conn).Close, the default before, waited forever for a
// *sql.Rows opened with context.Background and never closed. Remove now
// returns with an error wrapping scopedsql.ErrConnInUse that says what
// was wrong, the connection is discarded, and it is released once the
// leftover ends.
func TestSQLConnDefaultTeardownDoesNotWaitForForgottenRows(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db, err := sql.Open(s.Driver, s.DSN)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var hook testkit.Errors
		conns := scoped.New(func(ctx context.Context) (*sql.Conn, error) { return db.Conn(ctx) },
			scoped.WithTeardownErrorHook(hook.Hook))

		ctx, scope := scoped.Begin(dbtest.Ctx(t))
		c, err := conns.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := c.QueryContext(context.Background(), "SELECT 1 UNION ALL SELECT 2")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close() // at the end of the test: a failing run must not hang
		done := make(chan error, 1)
		go func() { done <- scope.Remove() }()
		err = testkit.WaitFor(t, done, "Remove to return")
		if !errors.Is(err, scopedsql.ErrConnInUse) {
			t.Fatalf("Remove = %v, want an error wrapping scopedsql.ErrConnInUse", err)
		}
		if errs := hook.List(); len(errs) != 1 || !errors.Is(errs[0], scopedsql.ErrConnInUse) {
			t.Errorf("teardown errors %v, want the ErrConnInUse error", errs)
		}
		if err := rows.Close(); err != nil {
			t.Logf("rows.Close on the discarded connection: %v", err)
		}
		testkit.Eventually(t, "the discarded connection's release", func() bool { return db.Stats().InUse == 0 })
	})
}
