package scopedsql_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// The server is alive but the connection is killed right at COMMIT: a
// deferred constraint trigger makes COMMIT wait on an advisory lock that
// another connection holds, and that connection terminates the committing
// backend (pg_terminate_backend) while it waits. The transaction is
// aborted. VerifiedCommit must say so (an error, not ErrCommitUnknown,
// and certainly not nil); the core's default commit may only say the
// outcome is unknown, never nil. No row is saved, no connection is left
// in use, and the pool serves the next unit.
func TestReview7VerifiedCommitOfABackendTerminatedAtCommit(t *testing.T) {
	s := dbtest.Postgres(t)
	admin := openDB(t, s)
	table := dbtest.CreateIDTable(t, admin, "r7_verified")
	const lockKey = 230099
	fn := table + "_wait"
	for _, q := range []string{
		"CREATE FUNCTION " + fn + "() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_xact_lock(" +
			fmt.Sprint(lockKey) + "); RETURN NULL; END $$",
		"CREATE CONSTRAINT TRIGGER " + table + "_at_commit AFTER INSERT ON " + table +
			" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION " + fn + "()",
	} {
		if _, err := admin.ExecContext(dbtest.Ctx(t), q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "DROP FUNCTION "+fn+" CASCADE") })

	for i, verified := range []bool{true, false} {
		t.Run(map[bool]string{true: "verified", false: "default"}[verified], func(t *testing.T) {
			db := openDB(t, s)
			opts := []scoped.Option{scoped.WithTeardownErrorHook(nil)}
			if verified {
				opts = append(opts, scopedsql.VerifiedCommit(db))
			}
			txs := scoped.New(scopedsql.Tx(db, nil), opts...)
			holder, err := admin.Conn(dbtest.Ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Close()
			if _, err := holder.ExecContext(dbtest.Ctx(t), "SELECT pg_advisory_lock($1)", lockKey); err != nil {
				t.Fatal(err)
			}
			unlocked := false
			unlock := func() {
				if !unlocked {
					unlocked = true
					_, _ = holder.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", lockKey)
				}
			}
			defer unlock()

			id := int64(i + 1)
			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			tx, err := txs.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			pid := backendID(t, tx, s)
			if _, err := tx.ExecContext(ctx, s.InsertID(table), id); err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() { errc <- scope.Commit() }()
			testkit.Eventually(t, "COMMIT waiting on the lock", func() bool {
				var n int
				return admin.QueryRowContext(dbtest.Ctx(t), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
					pid).Scan(&n) == nil && n == 1
			})
			var killed bool
			if err := admin.QueryRowContext(dbtest.Ctx(t), "SELECT pg_terminate_backend($1)", pid).Scan(&killed); err != nil || !killed {
				t.Fatalf("pg_terminate_backend: %v, %v", killed, err)
			}
			err = testkit.WaitFor(t, errc, "the commit")
			unlock()
			scope.Remove()
			switch {
			case err == nil:
				t.Errorf("Commit of a transaction whose backend was terminated at COMMIT = nil: a write that did not commit answered OK")
			case verified && errors.Is(err, scoped.ErrCommitUnknown):
				t.Errorf("VerifiedCommit = %v: the server was alive and knew the transaction aborted", err)
			case !verified && !errors.Is(err, scoped.ErrCommitUnknown):
				t.Logf("default commit: %v", err)
			}
			var n int
			if err := admin.QueryRowContext(dbtest.Ctx(t), "SELECT count(*) FROM "+table+" WHERE id = $1", id).Scan(&n); err != nil {
				t.Fatal(err)
			} else if n != 0 {
				t.Errorf("the terminated transaction's row is saved")
			}
			wantInUse(t, db, 0)
			if err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				var one int
				return tx.QueryRowContext(ctx, "SELECT 1").Scan(&one)
			}); err != nil {
				t.Errorf("the next unit after a terminated commit: %v", err)
			}
			wantInUse(t, db, 0)
		})
	}
}

// VerifiedCommit on a backend terminated before COMMIT, while the unit
// was idle in its transaction: the read of the transaction's id fails on
// the dead connection, and the error must say nothing was saved (it
// rolled back), with no connection in use.
func TestReview7VerifiedCommitOfABackendTerminatedBeforeCommit(t *testing.T) {
	s := dbtest.Postgres(t)
	admin := openDB(t, s)
	db := openDB(t, s)
	table := dbtest.CreateIDTable(t, admin, "r7_verified_idle")
	txs := scoped.New(scopedsql.Tx(db, nil), scopedsql.VerifiedCommit(db), scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(dbtest.Ctx(t))
	tx, err := txs.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := backendID(t, tx, s)
	if _, err := tx.ExecContext(ctx, s.InsertID(table), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ExecContext(dbtest.Ctx(t), "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the backend gone", func() bool {
		var n int
		return admin.QueryRowContext(dbtest.Ctx(t), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n) == nil && n == 0
	})
	err = scope.Commit()
	scope.Remove()
	if err == nil {
		t.Error("Commit on a terminated backend = nil")
	} else if errors.Is(err, scoped.ErrCommitUnknown) {
		t.Errorf("Commit on a backend terminated before COMMIT = %v: nothing was sent, nothing saved", err)
	}
	if got := dbtest.IDs(t, admin, table); len(got) != 0 {
		t.Errorf("saved %v", got)
	}
	wantInUse(t, db, 0)
}
