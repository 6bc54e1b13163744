package scopedsql_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// sqlState is an error with a SQLSTATE, as lib/pq and pgx report
// CockroachDB's errors.
type sqlState string

func (s sqlState) Error() string    { return "server error " + string(s) }
func (s sqlState) SQLState() string { return string(s) }

// The errors of the engines users move to: CockroachDB (40001 restarts,
// 40003 ambiguous results), TiDB (9007 write conflicts), MySQL/MariaDB
// lock wait timeouts (1205, statement rolled back by default).
func TestRetryableOtherEngines(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"CockroachDB restart", sqlState("40001"), true},
		{"CockroachDB restart at COMMIT, wrapped", fmt.Errorf("scoped: commit: %w", sqlState("40001")), true},
		{"CockroachDB ambiguous result", sqlState("40003"), false},
		{"TiDB write conflict", &mysql.MySQLError{Number: 9007, Message: "Write conflict, txnStartTS=1 [try again later]"}, true},
		{"MySQL lock wait timeout", &mysql.MySQLError{Number: 1205, Message: "Lock wait timeout exceeded; try restarting transaction"}, true},
		{"MySQL deadlock", &mysql.MySQLError{Number: 1213}, true},
		{"MySQL duplicate key", &mysql.MySQLError{Number: 1062}, false},
	} {
		if got := scopedsql.Retryable(c.err); got != c.want {
			t.Errorf("%s: Retryable(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// A COMMIT the server answers with 40003 (statement completion unknown,
// CockroachDB's ambiguous result) may have saved the work: the scope's
// commit says ErrCommitUnknown, not ErrNotCommitted, and nothing retries
// it. PostgreSQL sends that SQLSTATE here from a deferred trigger.
func TestCommitCompletionUnknownIsErrCommitUnknown(t *testing.T) {
	t.Parallel()
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	table := dbtest.CreateIDTable(t, db, "scopedsql_40003")
	ctx := dbtest.Ctx(t)
	ddl := fmt.Sprintf(`
CREATE FUNCTION %[1]s_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'result is ambiguous' USING ERRCODE = '40003';
END $$;
CREATE CONSTRAINT TRIGGER %[1]s_check AFTER INSERT ON %[1]s
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %[1]s_check();`, table)
	if _, err := db.ExecContext(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP FUNCTION "+table+"_check() CASCADE") })

	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	runs := 0
	err := scoped.Run(ctx, func(ctx context.Context) error {
		runs++
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.InsertID(table), 1)
		return err
	}, scoped.WithRetry(3, func(error) bool { return true })) // even a classifier that accepts everything
	if !errors.Is(err, scoped.ErrCommitUnknown) || errors.Is(err, scoped.ErrNotCommitted) {
		t.Errorf("commit = %v, want ErrCommitUnknown (and not ErrNotCommitted)", err)
	}
	if scopedsql.Retryable(err) {
		t.Errorf("Retryable(%v) = true", err)
	}
	if runs != 1 {
		t.Errorf("%d runs, want 1: an ambiguous commit is never run again", runs)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
		t.Errorf("rows = %d (%v), want 0 (PostgreSQL rolled back)", n, err)
	}
}
