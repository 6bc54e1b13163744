package scopedpgx

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
)

// A COMMIT the server answers with 40003 (statement completion unknown,
// CockroachDB's ambiguous result) may have saved the work: the scope's
// commit says ErrCommitUnknown, not ErrNotCommitted, and nothing retries
// it, with or without verified commits. PostgreSQL sends that SQLSTATE
// here from a deferred trigger.
func TestCommitCompletionUnknownIsErrCommitUnknown(t *testing.T) {
	pool := newPool(t, 4)
	table := dbtest.Table("scopedpgx_40003")
	ctx := dbtest.Ctx(t)
	ddl := fmt.Sprintf(`
CREATE TABLE %[1]s (id int PRIMARY KEY);
CREATE FUNCTION %[1]s_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'result is ambiguous' USING ERRCODE = '40003';
END $$;
CREATE CONSTRAINT TRIGGER %[1]s_check AFTER INSERT ON %[1]s
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %[1]s_check();`, table)
	if _, err := pool.Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP TABLE "+table+"; DROP FUNCTION "+table+"_check()")
	})
	if Retryable(&pgconn.PgError{Code: "40003"}) || !Retryable(&pgconn.PgError{Code: "40001"}) {
		t.Error("Retryable: want 40001 accepted, 40003 refused")
	}
	for _, verify := range []bool{false, true} {
		t.Run(fmt.Sprintf("verify=%v", verify), func(t *testing.T) {
			var opts []Option
			if !verify {
				opts = append(opts, WithoutVerifiedCommit())
			}
			txs := scoped.New(Tx(pool, pgx.TxOptions{}, opts...), scoped.WithRollback(Rollback), scoped.WithTeardownErrorHook(nil))
			runs := 0
			err := scoped.Run(ctx, func(ctx context.Context) error {
				runs++
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES (1)")
				return err
			}, scoped.WithRetry(3, func(error) bool { return true })) // even a classifier that accepts everything
			if !errors.Is(err, scoped.ErrCommitUnknown) || errors.Is(err, scoped.ErrNotCommitted) {
				t.Errorf("commit = %v, want ErrCommitUnknown (and not ErrNotCommitted)", err)
			}
			if runs != 1 {
				t.Errorf("%d runs, want 1: an ambiguous commit is never run again", runs)
			}
		})
	}
}
