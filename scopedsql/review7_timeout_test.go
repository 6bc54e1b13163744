package scopedsql_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// StatementTimeout is PostgreSQL's (SET LOCAL statement_timeout). On
// MariaDB a unit with a deadline fails closed: Current returns the
// server's refusal (errors.As finds the *mysql.MySQLError), the unit runs
// nothing, and the connection goes back to the pool; a unit without a
// deadline sends nothing and runs. (A trap for a MariaDB user whose tests
// run without deadlines: see the report; documented as PostgreSQL only.)
func TestReview7StatementTimeoutOnMariaDB(t *testing.T) {
	s := dbtest.MySQL(t)
	db := openDB(t, s)
	db.SetMaxOpenConns(1)
	txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(scopedsql.StatementTimeout), scoped.WithTeardownErrorHook(nil))
	unit := func(ctx context.Context) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			var one int
			return tx.QueryRowContext(ctx, "SELECT 1").Scan(&one)
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	var myErr *mysql.MySQLError
	if err := unit(ctx); !errors.As(err, &myErr) {
		t.Errorf("a unit with a deadline on MariaDB = %v, want the server's refusal", err)
	}
	wantInUse(t, db, 0)
	if err := unit(context.Background()); err != nil {
		t.Errorf("a unit without a deadline on MariaDB = %v, want it to run", err)
	}
	wantInUse(t, db, 0)
}

// On PostgreSQL a statement past the unit's deadline is cancelled by the
// server even though the client ignores the deadline (WithoutCancel), the
// unit's error says so, the transaction is rolled back, and the pool's one
// connection serves the next unit with no statement_timeout left on it.
func TestReview7StatementTimeoutEndsWithItsUnit(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	db.SetMaxOpenConns(1)
	table := dbtest.CreateIDTable(t, db, "r7_timeout")
	txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(scopedsql.StatementTimeout), scoped.WithTeardownErrorHook(nil))
	short, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := scoped.Run(short, func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(context.WithoutCancel(ctx), s.InsertID(table), 1); err != nil {
			return err
		}
		_, err = tx.ExecContext(context.WithoutCancel(ctx), "SELECT pg_sleep(30)")
		return err
	})
	if err == nil {
		t.Fatal("a statement past its unit's deadline returned no error")
	}
	if got := dbtest.IDs(t, db, table); len(got) != 0 {
		t.Errorf("saved %v after the unit failed", got)
	}
	var setting string
	if err := db.QueryRowContext(dbtest.Ctx(t), "SHOW statement_timeout").Scan(&setting); err != nil {
		t.Fatal(err)
	} else if setting != "0" {
		t.Errorf("statement_timeout on the pooled connection after the unit = %q, want 0", setting)
	}
	wantInUse(t, db, 0)
}
