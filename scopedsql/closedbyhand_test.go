package scopedsql_test

import (
	"database/sql"
	"errors"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// A *sql.Conn closed by hand (defer c.Close(), as database/sql's docs
// teach) goes back to the pool with its session as the unit left it,
// before NewConn's reset could run: PostgreSQL's DISCARD ALL and
// MariaDB's close both miss it. The scope's end must say so, as CloseConn
// does (an error wrapping sql.ErrConnDone), not return nil.
func TestNewConnClosedByHandSaysSo(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		conns := scopedsql.NewConn(db)
		set, probe := "SET application_name = 'closed-by-hand'", "SELECT current_setting('application_name') = 'closed-by-hand'"
		if s.Name != "postgres" {
			set, probe = "SET @closed_by_hand = 1", "SELECT COALESCE(@closed_by_hand = 1, FALSE)"
		}
		ctx, scope := scoped.Begin(dbtest.Ctx(t))
		c, err := conns.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ExecContext(ctx, set); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		err = removeOrHang(t, scope)
		var leaked bool
		if err := db.QueryRowContext(dbtest.Ctx(t), probe).Scan(&leaked); err != nil {
			t.Fatal(err)
		}
		if leaked && !errors.Is(err, sql.ErrConnDone) {
			t.Errorf("the unit's session state reached the pool's next user and Remove = %v, want an error wrapping sql.ErrConnDone", err)
		}
		wantInUse(t, db, 0)
	})
}
