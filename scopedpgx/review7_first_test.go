package scopedpgx

import (
	"context"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
)

// A unit whose first statement (the one BEGIN rides with) fails, and
// whose handler ignores the error and carries on, must not be answered
// OK: its commit fails, nothing of it is saved, and its connection goes
// back to the pool outside any transaction. Every way the first
// statement can fail: on the server after BEGIN ran (pipelined), before
// BEGIN ran (pgx could not prepare it: the fallback that begins alone),
// on the simple protocol path, and in WithSetup's statements.
func TestReview7FirstStatementFailureIsNeverSaved(t *testing.T) {
	pool := newPool(t, 1) // one connection: the next unit reuses it
	table := newTable(t, pool, "review7_first")
	if _, err := pool.Exec(context.Background(), "INSERT INTO "+table+" (id) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	failSetup := WithSetup(func(_ context.Context, b *pgx.Batch) error {
		b.Queue("select 1/0")
		return nil
	})
	cases := []struct {
		name  string
		opts  []Option
		first string
		args  []any
	}{
		{"unique violation", nil, "INSERT INTO " + table + " (id) VALUES ($1)", []any{1}},
		{"unknown table", nil, "INSERT INTO review7_no_such_table (id) VALUES ($1)", []any{1}},
		{"syntax error without arguments", nil, "INSERT INTO " + table + " (id) VALUES (2", nil},
		{"two statements, the second failing", nil, "INSERT INTO " + table + " (id) VALUES (2); SELECT 1/0", nil},
		{"setup failing", []Option{failSetup}, "INSERT INTO " + table + " (id) VALUES ($1)", []any{2}},
	}
	for _, c := range cases {
		for _, eager := range []bool{false, true} {
			opts := append([]Option{scoped.WithTeardownErrorHook(nil)}, c.opts...)
			if eager {
				if c.opts != nil {
					continue // an eager setup failure fails Current: see below
				}
				opts = append(opts, WithEagerBegin())
			}
			txs := NewTx(pool, pgx.TxOptions{}, opts...)
			ctx, scope := scoped.Begin(context.Background())
			tx, err := txs.Current(ctx)
			if err != nil {
				t.Fatalf("%s (eager %v): %v", c.name, eager, err)
			}
			if _, err := tx.Exec(ctx, c.first, c.args...); err == nil {
				t.Fatalf("%s (eager %v): first statement succeeded", c.name, eager)
			}
			// The handler ignores it and writes again.
			_, _ = tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", 3)
			if err := scope.Commit(); err == nil {
				t.Errorf("%s (eager %v): commit succeeded after a failed first statement", c.name, eager)
			}
			if got := ids(t, pool, table); len(got) != 1 {
				t.Errorf("%s (eager %v): rows %v, want [1]", c.name, eager, got)
			}
			if n := pool.Stat().AcquiredConns(); n != 0 {
				t.Fatalf("%s (eager %v): %d connections acquired", c.name, eager, n)
			}
			// The next user of the pool's connection is outside a transaction.
			pc, err := pool.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st := pc.Conn().PgConn().TxStatus(); st != 'I' {
				t.Errorf("%s (eager %v): pool's connection after the unit has transaction status %q", c.name, eager, st)
			}
			pc.Release()
		}
	}
	// WithEagerBegin with a failing setup: Current fails, no connection
	// stays acquired, and the scope commits nothing.
	txs := NewTx(pool, pgx.TxOptions{}, failSetup, WithEagerBegin(), scoped.WithTeardownErrorHook(nil))
	ctx, scope := scoped.Begin(context.Background())
	if _, err := txs.Current(ctx); err == nil {
		t.Error("eager begin with a failing setup: Current succeeded")
	}
	_ = scope.Commit() // nothing to commit
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("eager setup failure: %d connections acquired", n)
	}
}
