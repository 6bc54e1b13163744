package scopedpgx

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/go-scoped/scoped"
)

// Issue 20 item 5: a first statement called with a context that is
// already done fails, as in pgx's own transaction, and only that call:
// pgx sends nothing, so nothing began and nothing failed to begin. The
// next call, with a live context, begins the transaction, which commits.
// Every way a first statement can be made.
func TestTxFirstCallWithDoneContextFailsOnlyItself(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgx_donectx")
	done, cancel := context.WithCancel(context.Background())
	cancel()
	calls := []struct {
		name string
		call func(tx pgx.Tx) error
	}{
		{"Exec", func(tx pgx.Tx) error { _, err := tx.Exec(done, "SELECT 1"); return err }},
		{"Exec with arguments", func(tx pgx.Tx) error { _, err := tx.Exec(done, "SELECT $1::int", 1); return err }},
		{"Exec of two statements", func(tx pgx.Tx) error { _, err := tx.Exec(done, "SELECT 1; SELECT 2"); return err }},
		{"Query", func(tx pgx.Tx) error {
			rs, err := tx.Query(done, "SELECT 1")
			if err == nil {
				rs.Close()
				err = rs.Err()
			}
			return err
		}},
		{"QueryRow", func(tx pgx.Tx) error { return tx.QueryRow(done, "SELECT 1").Scan(new(int)) }},
		{"SendBatch", func(tx pgx.Tx) error {
			b := &pgx.Batch{}
			b.Queue("SELECT 1")
			return tx.SendBatch(done, b).Close()
		}},
		{"CopyFrom", func(tx pgx.Tx) error {
			_, err := tx.CopyFrom(done, pgx.Identifier{"x"}, []string{"id"}, pgx.CopyFromRows(nil))
			return err
		}},
		{"Begin", func(tx pgx.Tx) error { _, err := tx.Begin(done); return err }},
	}
	for i, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			txs := NewTx(pool, pgx.TxOptions{})
			ctx, scope := scoped.Begin(context.Background())
			defer scope.Remove()
			tx, err := txs.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.call(tx); !errors.Is(err, context.Canceled) {
				t.Fatalf("call with a done context: %v, want context.Canceled", err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", i); err != nil {
				t.Fatalf("next call with a live context: %v", err)
			}
			if err := scope.Commit(); err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(ids(t, pool, table), i) {
				t.Errorf("row %d not committed", i)
			}
			if n := pool.Stat().AcquiredConns(); n != 0 {
				t.Errorf("%d connections still acquired", n)
			}
		})
	}
}
