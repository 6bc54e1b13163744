package scopedsql_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// A pinned connection hands none of its scope's session state to the next
// scope, through a pool of one connection: PostgreSQL's role, search_path,
// temporary table, advisory lock and prepared statement; MariaDB's user
// variable, session variable, named lock and temporary table.
func TestNewConnLeavesNoSessionStateToTheNextScope(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		conns := scopedsql.NewConn(db)
		name := dbtest.Table("reset")
		var setup []string
		var checks []struct {
			what, query string
			fails       bool
		}
		if s.Name == "postgres" {
			if _, err := db.ExecContext(dbtest.Ctx(t), "CREATE ROLE "+name+" NOLOGIN"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if _, err := db.ExecContext(context.Background(), "DROP ROLE "+name); err != nil {
					t.Errorf("drop role: %v", err)
				}
			})
			setup = []string{
				"SET ROLE " + name,
				"SET search_path TO " + name + ", public",
				"CREATE TEMP TABLE " + name + " (id int)",
				"SELECT pg_advisory_lock(230023)",
				"PREPARE " + name + " AS SELECT 1",
				"SET app.tenant_id = 'tenant-a'",
			}
			checks = []struct {
				what, query string
				fails       bool
			}{
				{"role", "SELECT current_user <> '" + name + "'", false},
				{"search_path", "SELECT current_setting('search_path') NOT LIKE '%" + name + "%'", false},
				{"temporary table", "SELECT to_regclass('pg_temp." + name + "') IS NULL", false},
				{"advisory lock", "SELECT NOT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objid = 230023)", false},
				{"prepared statement", "SELECT NOT EXISTS (SELECT FROM pg_prepared_statements WHERE name = '" + name + "')", false},
				{"custom setting", "SELECT coalesce(current_setting('app.tenant_id', true), '') = ''", false},
			}
		} else {
			setup = []string{
				"SET @" + name + " = 'tenant-a'",
				"SET SESSION wait_timeout = 12345",
				"SELECT GET_LOCK('" + name + "', 0)",
				"CREATE TEMPORARY TABLE " + name + " (id int)",
			}
			checks = []struct {
				what, query string
				fails       bool
			}{
				{"user variable", "SELECT @" + name + " IS NULL", false},
				{"session variable", "SELECT @@SESSION.wait_timeout <> 12345", false},
				// The server releases a closed session's lock as it
				// cleans the session up, which may still be under way:
				// what matters is that this session does not hold it.
				{"named lock", "SELECT COALESCE(IS_USED_LOCK('" + name + "') <> CONNECTION_ID(), TRUE)", false},
				{"temporary table", "SELECT COUNT(*) > 0 FROM " + name, true},
			}
		}
		run := func(f func(ctx context.Context, c *sql.Conn)) {
			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			defer func() {
				if err := scope.Remove(); err != nil {
					t.Error(err)
				}
			}()
			c, err := conns.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			f(ctx, c)
		}
		run(func(ctx context.Context, c *sql.Conn) {
			for _, q := range setup {
				if _, err := c.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
		})
		run(func(ctx context.Context, c *sql.Conn) {
			for _, ch := range checks {
				var clean bool
				err := c.QueryRowContext(ctx, ch.query).Scan(&clean)
				if ch.fails {
					clean = err != nil // the table is not there
				} else if err != nil {
					t.Fatalf("%s: %v", ch.query, err)
				}
				if !clean {
					t.Errorf("the next scope inherits the previous scope's %s", ch.what)
				}
			}
		})
	})
}

// The reset keeps PostgreSQL's connection (DISCARD ALL, then pooled) and
// replaces MariaDB's (closed: no reset exists); WithoutSessionReset pools
// either as it is.
func TestNewConnResetKeepsOrReplacesTheConnection(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		ids := func(conns *scoped.ScopedSession[*sql.Conn]) (first, second int64) {
			for i := range 2 {
				ctx, scope := scoped.Begin(dbtest.Ctx(t))
				c, err := conns.Current(ctx)
				if err != nil {
					t.Fatal(err)
				}
				id := backendID(t, c, s)
				if err := scope.Remove(); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					first = id
				} else {
					second = id
				}
			}
			return first, second
		}
		a, b := ids(scopedsql.NewConn(db))
		if same := a == b; same != (s.Name == "postgres") {
			t.Errorf("NewConn: connection %d then %d; want the same one on PostgreSQL, a new one on MariaDB", a, b)
		}
		a, b = ids(scopedsql.NewConn(db, scopedsql.WithoutSessionReset()))
		if a != b {
			t.Errorf("NewConn with WithoutSessionReset: connection %d then %d, want the same", a, b)
		}
	})
}
