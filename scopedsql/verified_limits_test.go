package scopedsql_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// A unit whose deadline is further away than PostgreSQL's largest
// statement_timeout (2^31-1 ms, about 24.8 days: a long job's context)
// still begins: StatementTimeout sets the largest timeout the server
// takes rather than failing the setup, and so every Current of the unit.
func TestStatementTimeoutPastTheServersLargestStillBegins(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(scopedsql.StatementTimeout))
	ctx, cancel := context.WithTimeout(context.Background(), 30*24*time.Hour)
	defer cancel()
	var got string
	err := scoped.Run(ctx, func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, "SHOW statement_timeout").Scan(&got)
	})
	if err != nil {
		t.Fatalf("a unit with a 30-day deadline: %v", err)
	}
	if got == "0" {
		t.Errorf("statement_timeout = %q: the deadline set no bound at all", got)
	}
	wantInUse(t, db, 0)
}

// VerifiedCommit is for PostgreSQL; on another server its read of the
// transaction's id fails, and the commit must then fail without saving
// anything: its error says "nothing was committed" (ErrNotCommitted), so
// the work must not be on the server (a client told so sends it again,
// and it would be saved twice). It used to COMMIT the transaction after
// the failed read "to end it": on MariaDB a failed statement leaves the
// transaction open, and that COMMIT saved the work reported unsaved.
func TestVerifiedCommitThatCannotReadTheIDSavesNothing(t *testing.T) {
	s := dbtest.MySQL(t)
	db := openDB(t, s)
	table := dbtest.CreateIDTable(t, db, "rv2_verified")
	txs := scoped.New(scopedsql.Tx(db, nil), scopedsql.VerifiedCommit(db), scoped.WithTeardownErrorHook(nil))
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.InsertID(table), 1)
		return err
	})
	if !errors.Is(err, scoped.ErrNotCommitted) {
		t.Fatalf("Run: %v, want an error wrapping ErrNotCommitted", err)
	}
	if !strings.Contains(err.Error(), "PostgreSQL") {
		t.Errorf("Run: %v; want the error to say that VerifiedCommit needs PostgreSQL", err)
	}
	if ids := dbtest.IDs(t, db, table); len(ids) != 0 {
		t.Errorf("the commit failed with %q, yet ids %v are saved", err, ids)
	}
	wantInUse(t, db, 0)
}
