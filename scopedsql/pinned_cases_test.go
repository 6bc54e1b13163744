package scopedsql_test

import (
	"context"
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

// WithoutSessionReset pools the connection as it is, which is right for
// session state the unit did not leave, but a transaction the unit began
// with SQL and did not end is no session state the caller declared away:
// its writes must not be committed by the next user of the connection
// (MariaDB's START TRANSACTION commits an open one implicitly).
func TestNewConnWithoutResetHandBeginIsNotCommittedByTheNextUser(t *testing.T) {
	t.Skip("design/doc defect: WithoutSessionReset pools a connection left in a transaction begun with SQL; on MariaDB the next BeginTx commits it (lead)")
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		table := dbtest.Table("handbegin")
		if _, err := db.ExecContext(dbtest.Ctx(t), "CREATE TABLE "+table+" (id int)"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP TABLE "+table) })
		conns := scopedsql.NewConn(db, scopedsql.WithoutSessionReset())
		ctx, scope := scoped.Begin(dbtest.Ctx(t))
		c, err := conns.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		begin := "BEGIN"
		if s.Name != "postgres" {
			begin = "START TRANSACTION"
		}
		if _, err := c.ExecContext(ctx, begin); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ExecContext(ctx, "INSERT INTO "+table+" VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		// The unit fails here: no COMMIT.
		rmErr := removeOrHang(t, scope)
		t.Logf("Remove: %v", rmErr)
		// The next user: a transaction of its own, rolled back.
		tx, err := db.BeginTx(dbtest.Ctx(t), nil)
		if err == nil {
			_ = tx.Rollback()
		}
		var n int
		if err := db.QueryRowContext(dbtest.Ctx(t), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("the failed unit's uncommitted insert was saved by the pool's next user (Remove = %v)", rmErr)
		}
	})
}

// A pinned *sql.Conn pins a client connection, not a server session:
// through PgBouncer in transaction mode a SET outside a transaction stays
// on the server connection that ran it, which PgBouncer hands to other
// clients at once, and NewConn's DISCARD ALL runs on whichever server
// connection PgBouncer picks for it. docs/tenancy.md says session state on
// pinned connections is reset and that transaction mode suits scoped; it
// does not say that the two do not go together.
func TestNewConnSessionStateThroughPgBouncerReachesOtherUnits(t *testing.T) {
	t.Skip("doc defect: tenancy.md must say pinned connections do not pin a server session through PgBouncer transaction mode (lead)")
	t.Parallel()
	s := dbtest.PgBouncer(t, dbtest.Postgres(t), "", 1)
	db := openDB(t, s)
	db.SetMaxOpenConns(2)
	conns := scopedsql.NewConn(db)
	ctxA, a := scoped.Begin(dbtest.Ctx(t))
	defer func() { _ = removeOrHang(t, a) }()
	ca, err := conns.Current(ctxA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.ExecContext(ctxA, "SET app.tenant_id = 'tenant-a'"); err != nil {
		t.Fatal(err)
	}
	ctxB, b := scoped.Begin(dbtest.Ctx(t))
	defer func() { _ = removeOrHang(t, b) }()
	cb, err := conns.Current(ctxB)
	if err != nil {
		t.Fatal(err)
	}
	if ca == cb {
		t.Fatal("two units share one pinned connection")
	}
	var tenant string
	if err := cb.QueryRowContext(ctxB, "SELECT coalesce(current_setting('app.tenant_id', true), '')").Scan(&tenant); err != nil {
		t.Fatal(err)
	}
	if tenant != "" {
		t.Errorf("unit B, on its own pinned connection, sees unit A's session setting app.tenant_id = %q", tenant)
	}
}

// sqlc's emit_prepared_queries generates Prepare(ctx, db DBTX), which
// prepares every query once, and helpers that run a prepared *sql.Stmt
// directly instead of calling db. Prepared through a DBTX outside a scope,
// the statements belong to the pool: inside a unit they run on the pool,
// outside its transaction, and a unit that fails keeps its writes.
// docs/sql.md's sqlc section does not warn against that setting.
func TestDBTXWithSQLCPreparedQueriesEscapesTheUnit(t *testing.T) {
	t.Skip("doc defect: sql.md must say NewDBTX does not work with sqlc's emit_prepared_queries (lead)")
	t.Parallel()
	db := openDB(t, dbtest.Postgres(t))
	table := dbtest.Table("sqlcprep")
	if _, err := db.ExecContext(dbtest.Ctx(t), "CREATE TABLE "+table+" (id int)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP TABLE "+table) })
	txs := scoped.New(scopedsql.Tx(db, nil))
	dbtx := scopedsql.NewDBTX(db, txs)
	// What sqlc's Prepare and exec helper do (q.tx is nil: no WithTx).
	stmt, err := dbtx.PrepareContext(dbtest.Ctx(t), "INSERT INTO "+table+" VALUES ($1)")
	if err != nil {
		t.Fatal(err)
	}
	defer stmt.Close()
	ctx, scope := scoped.Begin(dbtest.Ctx(t))
	if _, err := stmt.ExecContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(dbtest.Ctx(t), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("a unit rolled back, but the insert of a sqlc prepared query through DBTX was saved")
	}
}
