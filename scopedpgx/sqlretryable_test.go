package scopedpgx_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/go-scoped/scoped/scopedsql"
)

// pgx's *pgconn.PgError is matched by scopedsql by its SQLState method,
// without scopedsql importing pgx. The test lives here, in the module that
// needs pgx anyway, so that the root module does not require pgx for it.
func TestScopedsqlRetryableRecognisesPgxErrors(t *testing.T) {
	t.Parallel()
	s := dbtest.Postgres(t)
	ctx := dbtest.Ctx(t)
	connect := func() *pgx.Conn {
		conn, err := pgx.Connect(ctx, s.DSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		return conn
	}
	conn, other := connect(), connect()
	table := dbtest.Table("scopedpgx_sqlretryable")
	if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (id INT PRIMARY KEY, n INT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = other.Exec(context.Background(), "DROP TABLE "+table) })
	if _, err := conn.Exec(ctx, "INSERT INTO "+table+" (id, n) VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	bump := "UPDATE " + table + " SET n = n + 1 WHERE id = 1"

	// A serializable transaction reads the row, another connection changes
	// it, and the transaction's own write then fails with 40001.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	var n int
	if err := tx.QueryRow(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, bump); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, bump)
	if err == nil {
		t.Fatal("no serialization failure")
	}
	if !scopedsql.Retryable(fmt.Errorf("wrapped: %w", err)) {
		t.Errorf("Retryable(%v) = false", err)
	}
	_, syntax := other.Exec(ctx, "SELEKT 1")
	if syntax == nil || scopedsql.Retryable(syntax) {
		t.Errorf("Retryable(%v) = true", syntax)
	}
}

// scopedpgx.Retryable is the pgx package's own name for the classifier:
// on pgx's errors, wrapped or joined, it answers as scopedsql.Retryable.
func TestRetryableAgreesWithScopedsql(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"40001", "40P01", "40003", "55P03", "23505", "57P01", ""} {
		pgErr := &pgconn.PgError{Code: code}
		for _, err := range []error{
			pgErr,
			fmt.Errorf("commit: %w", pgErr),
			errors.Join(errors.New("first"), pgErr),
		} {
			if got, want := scopedpgx.Retryable(err), scopedsql.Retryable(err); got != want {
				t.Errorf("SQLSTATE %q, %v: scopedpgx.Retryable %v, scopedsql.Retryable %v", code, err, got, want)
			}
		}
	}
	if scopedpgx.Retryable(nil) || scopedsql.Retryable(nil) {
		t.Error("nil is retryable")
	}
}
