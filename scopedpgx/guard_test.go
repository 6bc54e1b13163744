package scopedpgx

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
)

// Every pgx.Tx method answers through the guard as pgx answers without
// it: rows collected with pgx's helpers, batches, COPY, prepared
// statements, QueryRow's ErrNoRows.
func TestTxGuardedCallsBehaveAsPgx(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgx_calls")
	r := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	tx, err := r.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}

	n, err := tx.CopyFrom(ctx, pgx.Identifier{table[1 : len(table)-1]}, []string{"id", "n"},
		pgx.CopyFromRows([][]any{{1, 10}, {2, 20}}))
	if err != nil || n != 2 {
		t.Fatalf("CopyFrom: %d, %v", n, err)
	}
	b := &pgx.Batch{}
	b.Queue("INSERT INTO " + table + " (id, n) VALUES (3, 30)")
	b.Queue("SELECT n FROM "+table+" WHERE id = $1", 2)
	br := tx.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		t.Fatal(err)
	}
	var twenty int
	if err := br.QueryRow().Scan(&twenty); err != nil || twenty != 20 {
		t.Fatalf("batch QueryRow: %d, %v", twenty, err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Prepare(ctx, "by_id", "SELECT n FROM "+table+" WHERE id = $1"); err != nil {
		t.Fatal(err)
	}
	var thirty int
	if err := tx.QueryRow(ctx, "by_id", 3).Scan(&thirty); err != nil || thirty != 30 {
		t.Fatalf("prepared QueryRow: %d, %v", thirty, err)
	}
	if err := tx.QueryRow(ctx, "by_id", 99).Scan(&thirty); err != pgx.ErrNoRows {
		t.Fatalf("QueryRow of no row: %v, want pgx.ErrNoRows", err)
	}
	rows, err := tx.Query(ctx, "SELECT id, n FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	type item struct{ ID, N int }
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[item])
	if err != nil {
		t.Fatal(err)
	}
	if want := []item{{1, 10}, {2, 20}, {3, 30}}; !slices.Equal(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	if tag := rows.CommandTag(); tag.String() != "SELECT 3" {
		t.Errorf("command tag %q", tag)
	}
	if _, err := tx.Query(ctx, "SELECT no_such_column FROM "+table); err == nil {
		t.Error("a failing query returned no error")
	}
	if err := scope.Commit(); !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Errorf("Commit of a transaction in error: %v, want pgx.ErrTxCommitRollback", err)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired", n)
	}
}
