package scopedpgx_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/go-scoped/scoped/internal/dbtest"
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
