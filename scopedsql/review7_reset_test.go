package scopedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// A scope that set session state on its pinned connection and whose
// client then left while a query ran on it (the scope's context cancelled
// mid-query) hands none of that state to the next scope through a pool of
// one: the reset runs with a context of its own, or the connection is
// discarded. The scope's end reports no error (the client left), and no
// connection stays in use.
func TestReview7NewConnResetAfterTheClientLeftMidQuery(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		admin := openDB(t, s)
		conns := scopedsql.NewConn(db)
		name := dbtest.Table("r7reset")
		var setup []string
		var sleep, running, clean string
		if s.Name == "postgres" {
			if _, err := db.ExecContext(dbtest.Ctx(t), "CREATE ROLE "+name+" NOLOGIN"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "DROP ROLE "+name) })
			setup = []string{"SET ROLE " + name, "CREATE TEMP TABLE " + name + " (id int)",
				"SELECT pg_advisory_lock(230077)", "SET app.tenant_id = 'tenant-a'"}
			sleep = "SELECT pg_sleep(60)"
			running = "SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND state = 'active' AND query LIKE 'SELECT pg_sleep%%'"
			clean = "SELECT current_user <> '" + name + "' AND to_regclass('pg_temp." + name + "') IS NULL" +
				" AND coalesce(current_setting('app.tenant_id', true), '') = ''" +
				" AND NOT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objid = 230077 AND pid = pg_backend_pid())"
		} else {
			setup = []string{"SET @" + name + " = 'tenant-a'", "SELECT GET_LOCK('" + name + "', 0)"}
			sleep = "SELECT SLEEP(60)"
			running = "SELECT COUNT(*) FROM information_schema.processlist WHERE id = %d AND info LIKE 'SELECT SLEEP%%'"
			clean = "SELECT @" + name + " IS NULL AND COALESCE(IS_USED_LOCK('" + name + "') <> CONNECTION_ID(), TRUE)"
		}
		parent, cancel := context.WithCancelCause(dbtest.Ctx(t))
		defer cancel(nil)
		ctx, scope := scoped.Begin(parent)
		c, err := conns.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range setup {
			if _, err := c.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		id := backendID(t, c, s)
		errc := make(chan error, 1)
		go func() {
			_, err := c.ExecContext(ctx, sleep)
			errc <- err
		}()
		testkit.Eventually(t, "the query running", func() bool {
			var n int
			return admin.QueryRowContext(dbtest.Ctx(t), fmt.Sprintf(running, id)).Scan(&n) == nil && n == 1
		})
		cancel(errors.New("review7: the client left"))
		if err := testkit.WaitFor(t, errc, "the cancelled query"); err == nil {
			t.Error("the cancelled query returned no error")
		}
		if err := scope.Remove(); err != nil {
			t.Errorf("Remove after the client left = %v, want nil", err)
		}
		wantInUse(t, db, 0)
		ctx2, scope2 := scoped.Begin(dbtest.Ctx(t))
		c2, err := conns.Current(ctx2)
		if err != nil {
			t.Fatal(err)
		}
		var ok bool
		if err := c2.QueryRowContext(ctx2, clean).Scan(&ok); err != nil {
			t.Fatal(err)
		} else if !ok {
			t.Error("the next scope inherits the cancelled scope's session state")
		}
		if err := scope2.Remove(); err != nil {
			t.Error(err)
		}
		wantInUse(t, db, 0)
	})
}

// A transaction begun with SQL on the pinned connection and left open
// (PostgreSQL: BEGIN; then an error aborts it), which DISCARD ALL cannot
// run in: the connection is discarded rather than pooled in a transaction,
// and the next scope neither sees the uncommitted row nor gets an aborted
// transaction.
func TestReview7NewConnResetOfAnOpenSQLTransaction(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		table := dbtest.CreateIDTable(t, db, "r7_opentx")
		conns := scopedsql.NewConn(db)
		for _, aborted := range []bool{false, true} {
			func() {
				ctx, scope := scoped.Begin(dbtest.Ctx(t))
				defer func() {
					if err := scope.Remove(); err != nil {
						t.Errorf("Remove: %v", err)
					}
				}()
				c, err := conns.Current(ctx)
				if err != nil {
					t.Fatal(err)
				}
				begin := "BEGIN"
				if s.Name == "mysql" {
					begin = "START TRANSACTION"
				}
				if _, err := c.ExecContext(ctx, begin); err != nil {
					t.Fatal(err)
				}
				if _, err := c.ExecContext(ctx, s.InsertID(table), 1); err != nil {
					t.Fatal(err)
				}
				if aborted {
					_, _ = c.ExecContext(ctx, "SELECT * FROM r7_no_such_table")
				}
			}()
			wantInUse(t, db, 0)
			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			c, err := conns.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var tx *sql.Tx
			if tx, err = c.BeginTx(ctx, nil); err != nil {
				t.Fatalf("aborted %v: BeginTx on the next scope's connection: %v", aborted, err)
			}
			if _, err := tx.ExecContext(ctx, s.InsertID(table), 2); err != nil {
				t.Errorf("aborted %v: a statement of the next scope: %v", aborted, err)
			}
			if err := tx.Commit(); err != nil {
				t.Errorf("aborted %v: commit of the next scope: %v", aborted, err)
			}
			if err := scope.Remove(); err != nil {
				t.Error(err)
			}
			if got := dbtest.IDs(t, db, table); len(got) != 1 || got[0] != 2 {
				t.Errorf("aborted %v: saved %v, want only the next scope's [2]", aborted, got)
			}
			if _, err := db.ExecContext(dbtest.Ctx(t), "DELETE FROM "+table); err != nil {
				t.Fatal(err)
			}
		}
		wantInUse(t, db, 0)
	})
}
