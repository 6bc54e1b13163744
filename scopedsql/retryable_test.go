package scopedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// counterTable creates a table of rows (id, n) with ids 1 and 2.
func counterTable(t *testing.T, db *sql.DB, prefix string) string {
	t.Helper()
	name := dbtest.Table(prefix)
	ctx := dbtest.Ctx(t)
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+name+" (id INT PRIMARY KEY, n INT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP TABLE "+name) })
	if _, err := db.ExecContext(ctx, "INSERT INTO "+name+" (id, n) VALUES (1, 0), (2, 0)"); err != nil {
		t.Fatal(err)
	}
	return name
}

func bump(s dbtest.Server, table string) string {
	if s.Name == "postgres" {
		return "UPDATE " + table + " SET n = n + 1 WHERE id = $1"
	}
	return "UPDATE " + table + " SET n = n + 1 WHERE id = ?"
}

// deadlock makes two transactions lock rows 1 and 2 in opposite orders
// and returns the error of the one the server chose as the victim.
func deadlock(t *testing.T, db *sql.DB, s dbtest.Server) error {
	t.Helper()
	table := counterTable(t, db, "scopedsql_deadlock")
	ctx := dbtest.Ctx(t)
	tx1, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx1.Rollback() }()
	tx2, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx2.Rollback() }()
	for _, step := range []struct {
		tx *sql.Tx
		id int
	}{{tx1, 1}, {tx2, 2}} {
		if _, err := step.tx.ExecContext(ctx, bump(s, table), step.id); err != nil {
			t.Fatal(err)
		}
	}
	first := make(chan error, 1)
	go func() {
		_, err := tx1.ExecContext(ctx, bump(s, table), 2) // waits for tx2
		first <- err
	}()
	_, err2 := tx2.ExecContext(ctx, bump(s, table), 1) // closes the cycle
	if err2 != nil {
		_ = tx2.Rollback() // lets tx1 go on
		if err1 := <-first; err1 != nil {
			t.Fatalf("both transactions failed: %v; %v", err1, err2)
		}
		return err2
	}
	err1 := <-first
	if err1 == nil {
		t.Fatal("no deadlock was detected")
	}
	return err1
}

// serializationFailure makes a REPEATABLE READ (PostgreSQL: snapshot)
// transaction update a row that another transaction updated and
// committed after the first read it.
func serializationFailure(t *testing.T, db *sql.DB, s dbtest.Server) error {
	t.Helper()
	table := counterTable(t, db, "scopedsql_serial")
	ctx := dbtest.Ctx(t)
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, bump(s, table), 1); err != nil {
		t.Fatal(err)
	}
	_, err = tx.ExecContext(ctx, bump(s, table), 1)
	if err == nil {
		err = tx.Commit()
	}
	if err == nil {
		t.Fatal("no serialization failure")
	}
	return err
}

func TestRetryableRecognisesRealDeadlocksAndSerializationFailures(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		errs := map[string]error{"deadlock": deadlock(t, db, s)}
		if s.Name == "postgres" {
			errs["serialization failure"] = serializationFailure(t, db, s)
		} else {
			// 1205, with the default innodb_rollback_on_timeout=OFF: the
			// statement alone was rolled back (see Retryable).
			errs["lock wait timeout"] = lockWaitTimeout(t, db, s)
		}
		for what, err := range errs {
			t.Logf("%s: %v", what, err)
			for how, e := range map[string]error{
				"as the driver returned it": err,
				"wrapped":                   fmt.Errorf("scoped: commit *sql.Tx session: %w", err),
				"joined":                    errors.Join(errors.New("some teardown error"), fmt.Errorf("x: %w", err)),
			} {
				if !scopedsql.Retryable(e) {
					t.Errorf("%s, %s: Retryable(%v) = false", what, how, e)
				}
			}
		}
	})
}

// Errors that are not collisions: retrying them repeats the failure or,
// for PostgreSQL's lock timeout (55P03, which the application set),
// holds the request longer.
func TestRetryableRejectsOtherErrors(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		ctx := dbtest.Ctx(t)
		table := dbtest.CreateIDTable(t, db, "scopedsql_notretry")
		if _, err := db.ExecContext(ctx, s.InsertID(table), 1); err != nil {
			t.Fatal(err)
		}
		_, dup := db.ExecContext(ctx, s.InsertID(table), 1)
		_, syntax := db.ExecContext(ctx, "SELEKT 1")
		errs := map[string]error{
			"unique violation": dup, "syntax error": syntax,
			"nil": nil, "context canceled": context.Canceled, "no rows": sql.ErrNoRows,
		}
		if s.Name == "postgres" {
			errs["lock wait timeout"] = lockWaitTimeout(t, db, s)
		}
		for what, err := range errs {
			if what != "nil" && what != "context canceled" && what != "no rows" && err == nil {
				t.Fatalf("%s: no error", what)
			}
			if scopedsql.Retryable(err) {
				t.Errorf("%s: Retryable(%v) = true", what, err)
			}
		}
	})
}

func lockWaitTimeout(t *testing.T, db *sql.DB, s dbtest.Server) error {
	t.Helper()
	table := counterTable(t, db, "scopedsql_lockwait")
	ctx := dbtest.Ctx(t)
	holder, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Rollback() }()
	if _, err := holder.ExecContext(ctx, bump(s, table), 1); err != nil {
		t.Fatal(err)
	}
	waiter, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = waiter.Rollback() }()
	set := "SET LOCAL lock_timeout = '50ms'"
	if s.Name == "mysql" {
		set = "SET SESSION innodb_lock_wait_timeout = 1"
	}
	if _, err := waiter.ExecContext(ctx, set); err != nil {
		t.Fatal(err)
	}
	_, err = waiter.ExecContext(ctx, bump(s, table), 1)
	return err
}

// PostgreSQL reports many serialization failures at COMMIT (write skew
// under SERIALIZABLE); the scope's commit error, wrapped by the core,
// is still retryable.
func TestRetryableRecognisesASerializationFailureAtScopeCommit(t *testing.T) {
	t.Parallel()
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	table := counterTable(t, db, "scopedsql_skew")
	txs := scoped.New(scopedsql.Tx(db, &sql.TxOptions{Isolation: sql.LevelSerializable}),
		scoped.WithTeardownErrorHook(nil))
	var scopes [2]*scoped.Scope
	for i := range scopes {
		ctx, scope := scoped.Begin(dbtest.Ctx(t))
		defer scope.Remove()
		scopes[i] = scope
		tx, err := txs.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var sum int
		if err := tx.QueryRowContext(ctx, "SELECT sum(n) FROM "+table).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, bump(s, table), i+1); err != nil {
			t.Fatal(err)
		}
	}
	if err := scopes[0].Commit(); err != nil {
		t.Fatalf("first commit: %v", err)
	}
	err := scopes[1].Commit()
	if err == nil {
		t.Fatal("write skew committed under SERIALIZABLE")
	}
	if !scopedsql.Retryable(err) {
		t.Errorf("Retryable(%v) = false", err)
	}
}
