package scopedpgx

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
)

// TestRetryableSerializationFailure provokes a real serialization failure:
// two SERIALIZABLE scopes each read what the other writes. The loser's
// error, whether from its statement or its commit, is Retryable; other
// errors are not.
func TestRetryableSerializationFailure(t *testing.T) {
	pool := newPool(t, 4)
	table := newTable(t, pool, "retryable")
	if _, err := pool.Exec(context.Background(), "INSERT INTO "+table+" (id, n) VALUES (1, 0), (2, 0)"); err != nil {
		t.Fatal(err)
	}
	txs := NewTx(pool, pgx.TxOptions{IsoLevel: pgx.Serializable}, scoped.WithTeardownErrorHook(nil))
	ctxA, a := scoped.Begin(context.Background())
	defer a.Remove()
	ctxB, b := scoped.Begin(context.Background())
	defer b.Remove()
	txA, err := txs.Current(ctxA)
	if err != nil {
		t.Fatal(err)
	}
	txB, err := txs.Current(ctxB)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(ctx context.Context, tx pgx.Tx) (n int) {
		if err := tx.QueryRow(ctx, "SELECT sum(n) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	sum(ctxA, txA)
	sum(ctxB, txB)
	if _, err := txA.Exec(ctxA, "UPDATE "+table+" SET n = n + 1 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	_, errB := txB.Exec(ctxB, "UPDATE "+table+" SET n = n + 1 WHERE id = 2")
	if err := a.Commit(); err != nil {
		t.Fatalf("first commit: %v", err)
	}
	if errB == nil {
		errB = b.Commit()
	}
	if !Retryable(errB) {
		t.Fatalf("loser: %v, want a retryable serialization failure", errB)
	}
	for _, err := range []error{nil, errors.New("x"), pgx.ErrNoRows, fmt.Errorf("wrapped: %w", pgx.ErrTxClosed)} {
		if Retryable(err) {
			t.Errorf("Retryable(%v) = true", err)
		}
	}
	if !Retryable(fmt.Errorf("commit: %w", errB)) {
		t.Error("a wrapped serialization failure is not retryable")
	}
}
