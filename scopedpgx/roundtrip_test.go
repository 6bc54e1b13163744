package scopedpgx

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// inTx reports whether the connection of t, a transaction of Tx, is
// inside a transaction block, as the server last said. It does not use
// t.Conn, which would begin the transaction.
func inTx(t pgx.Tx) bool { return t.(*tx).conn().PgConn().TxStatus() != 'I' }

// firstCalls are the pgx.Tx methods that can be a transaction's first
// statement, each run once, and a read followed by a write.
var firstCalls = map[string]func(ctx context.Context, tx pgx.Tx, table string) error{
	"Exec": func(ctx context.Context, tx pgx.Tx, table string) error {
		_, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", 1)
		return err
	},
	"Query": func(ctx context.Context, tx pgx.Tx, table string) error {
		rows, _ := tx.Query(ctx, "INSERT INTO "+table+" (id) VALUES ($1) RETURNING id", 1)
		_, err := pgx.CollectRows(rows, pgx.RowTo[int])
		return err
	},
	"QueryRow": func(ctx context.Context, tx pgx.Tx, table string) error {
		var id int
		return tx.QueryRow(ctx, "INSERT INTO "+table+" (id) VALUES ($1) RETURNING id", 1).Scan(&id)
	},
	"SendBatch": func(ctx context.Context, tx pgx.Tx, table string) error {
		b := &pgx.Batch{}
		b.Queue("INSERT INTO "+table+" (id) VALUES ($1)", 1)
		return tx.SendBatch(ctx, b).Close()
	},
	"ReadThenWrite": func(ctx context.Context, tx pgx.Tx, table string) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id = $1", 1).Scan(&n); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO "+table+" (id, n) VALUES ($1, $2)", 1, n)
		return err
	},
	"Begin": func(ctx context.Context, tx pgx.Tx, table string) error {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := sp.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", 1); err != nil {
			return err
		}
		return sp.Commit(ctx)
	},
}

// TestTxBeginRidesWithFirstStatement: whatever the first statement is,
// BEGIN travels in its round trip, and the whole unit of work costs one
// round trip less than pgx's own transaction.
func TestTxBeginRidesWithFirstStatement(t *testing.T) {
	p := newProxy(t, 0)
	pool := p.pool(t, 1) // one connection: its statement cache is warm after the first round
	for name, call := range firstCalls {
		t.Run(name, func(t *testing.T) {
			table := newTable(t, pool, "rt")
			txs := NewTx(pool, pgx.TxOptions{})
			unit := func(ctx context.Context, tx pgx.Tx) error { return call(ctx, tx, table) }
			// Warm: the statements are prepared once per connection.
			for i := 0; i < 2; i++ {
				if _, err := runRoundTrips(t, p, pool, txs, unit, false); err != nil {
					t.Fatal(err)
				}
				if _, err := pool.Exec(context.Background(), "DELETE FROM "+table); err != nil {
					t.Fatal(err)
				}
			}
			want, err := handRoundTrips(t, p, pool, unit)
			if err != nil {
				t.Fatal(err)
			}
			got, err := runRoundTrips(t, p, pool, txs, unit, false)
			if err != nil {
				t.Fatal(err)
			}
			if got.first != want.first {
				t.Errorf("the statements took %d round trips with BEGIN, want %d (pgx's own without BEGIN: BEGIN in the same pipeline)", got.first, want.first)
			}
			if !got.began {
				t.Error("the first statement did not run inside a transaction")
			}
			if got.total != want.total-1 {
				t.Errorf("unit of work took %d round trips, want %d (one less than pgx's own %d)", got.total, want.total-1, want.total)
			}
			if n := len(ids(t, pool, table)); n != 1 {
				t.Errorf("%d rows committed, want 1", n)
			}
		})
	}
}

type trips struct {
	first, total int64
	began        bool
}

// runRoundTrips runs unit in a scope of txs, counting the round trips of
// the whole scope and those of unit alone; the scope commits, or rolls
// back when rollback is set.
func runRoundTrips(t testing.TB, p *proxy, pool *pgxpool.Pool, txs *scoped.ScopedSession[pgx.Tx], unit func(context.Context, pgx.Tx) error, rollback bool) (trips, error) {
	t.Helper()
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	start := p.roundTrips.Load() // Current included: that is where pgx's Begin would go
	tx, err := txs.Current(ctx)
	if err != nil {
		return trips{}, err
	}
	began := p.roundTrips.Load()
	if err := unit(ctx, tx); err != nil {
		return trips{}, err
	}
	r := trips{first: p.roundTrips.Load() - began, began: inTx(tx)}
	if rollback {
		scope.Remove()
	} else if err := scope.Commit(); err != nil {
		return r, err
	}
	r.total = p.roundTrips.Load() - start
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired after the scope", n)
	}
	return r, nil
}

// handRoundTrips runs unit as hand-written pgx code does, rolled back.
func handRoundTrips(t testing.TB, p *proxy, pool *pgxpool.Pool, unit func(context.Context, pgx.Tx) error) (trips, error) {
	t.Helper()
	ctx := context.Background()
	c, err := pool.Acquire(ctx)
	if err != nil {
		return trips{}, err
	}
	defer c.Release()
	start := p.roundTrips.Load()
	tx, err := c.Begin(ctx)
	if err != nil {
		return trips{}, err
	}
	began := p.roundTrips.Load()
	if err := unit(ctx, tx); err != nil {
		return trips{}, err
	}
	r := trips{first: p.roundTrips.Load() - began}
	err = tx.Rollback(ctx)
	r.total = p.roundTrips.Load() - start
	return r, err
}

// TestTxWithoutStatementSendsNothing: a scope that fetched its
// transaction but ran no statement sends no BEGIN, no COMMIT and no
// ROLLBACK, and gives its connection back.
func TestTxWithoutStatementSendsNothing(t *testing.T) {
	p := newProxy(t, 0)
	pool := p.pool(t, 1)
	txs := NewTx(pool, pgx.TxOptions{})
	for _, commit := range []bool{true, false} {
		ctx, scope := scoped.Begin(context.Background())
		if _, err := txs.Current(ctx); err != nil {
			t.Fatal(err)
		}
		start := p.messages.Load()
		var err error
		if commit {
			err = scope.Commit()
		} else {
			scope.Remove()
		}
		if err != nil {
			t.Fatalf("commit of an unused transaction: %v", err)
		}
		if n := p.messages.Load() - start; n != 0 {
			t.Errorf("commit=%v: an unused transaction sent %d messages, want none", commit, n)
		}
		if n := pool.Stat().AcquiredConns(); n != 0 {
			t.Errorf("commit=%v: %d connections acquired after the scope", commit, n)
		}
	}
}

// TestTxPrepareSendsNoBegin: a prepared statement belongs to the session,
// not the transaction, so Prepare alone does not begin it.
func TestTxPrepareSendsNoBegin(t *testing.T) {
	pool := newPool(t, 1)
	txs := NewTx(pool, pgx.TxOptions{})
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	tx, err := txs.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Prepare(ctx, "scopedpgx_two", "SELECT 2"); err != nil {
		t.Fatal(err)
	}
	if inTx(tx) {
		t.Error("Prepare began the transaction")
	}
	var n int
	if err := tx.QueryRow(ctx, "scopedpgx_two").Scan(&n); err != nil || n != 2 {
		t.Fatalf("prepared statement: %d, %v", n, err)
	}
	if !inTx(tx) {
		t.Error("the statement after Prepare ran outside a transaction")
	}
	if _, err := tx.Exec(ctx, "DEALLOCATE scopedpgx_two"); err != nil {
		t.Fatal(err)
	}
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestTxBeginFailureSurfacesAtFirstStatement: a BEGIN the server rejects
// fails the first statement, saying so and keeping the server's error,
// and every later call; the scope still ends and gives its connection back.
func TestTxBeginFailureSurfacesAtFirstStatement(t *testing.T) {
	pool := newPool(t, 2)
	txs := NewTx(pool, pgx.TxOptions{BeginQuery: "BEGIN ISOLATION LEVEL NONSENSE"}, scoped.WithTeardownErrorHook(nil)) // the failed commit is asserted below
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	tx, err := txs.Current(ctx)
	if err != nil {
		t.Fatalf("Current: %v (BEGIN is sent with the first statement, not here)", err)
	}
	_, err = tx.Exec(ctx, "SELECT 1")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42601" || !strings.Contains(err.Error(), "BEGIN") {
		t.Fatalf("first statement: %v, want the BEGIN's syntax error (42601), saying BEGIN failed", err)
	}
	if err2 := tx.QueryRow(ctx, "SELECT 1").Scan(new(int)); !errors.As(err2, &pgErr) {
		t.Errorf("later statement: %v, want the BEGIN's error again", err2)
	}
	if err := scope.Commit(); err == nil {
		t.Error("commit of a transaction that never began succeeded")
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired after the scope", n)
	}
}

// TestTxFirstStatementErrorsAsPgx: a first statement that fails behaves
// as in pgx's own transaction: its own error (not a BEGIN error), the
// transaction aborted, the commit a rollback.
func TestTxFirstStatementErrorsAsPgx(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "rtfail")
	txs := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil)) // failed commits are asserted below
	check := func(name string, tx pgx.Tx, end func() error) {
		ctx := context.Background()
		_, err := tx.Exec(ctx, "INSERT INTO "+table+" (id, nope) VALUES ($1, 1)", 1)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42703" || strings.Contains(err.Error(), "BEGIN") {
			t.Errorf("%s: first statement: %v, want undefined column 42703", name, err)
		}
		_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", 2)
		if !errors.As(err, &pgErr) || pgErr.Code != "25P02" {
			t.Errorf("%s: second statement: %v, want in failed transaction 25P02", name, err)
		}
		if err := end(); !errors.Is(err, pgx.ErrTxCommitRollback) {
			t.Errorf("%s: commit: %v, want pgx.ErrTxCommitRollback", name, err)
		}
	}
	own, err := pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	check("pgx", own, func() error { return own.Commit(context.Background()) })
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	tx, err := txs.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check("scopedpgx", tx, scope.Commit)
	if got := ids(t, pool, table); len(got) != 0 {
		t.Errorf("rows %v, want none", got)
	}
}

// TestTxEagerBeginOptOut: WithEagerBegin sends BEGIN when the transaction
// is handed out, as pgx's Begin does, and fails Current if it fails.
func TestTxEagerBeginOptOut(t *testing.T) {
	pool := newPool(t, 2)
	txs := scoped.New(Tx(pool, pgx.TxOptions{}, WithEagerBegin()), scoped.WithRollback(Rollback))
	ctx, scope := scoped.Begin(context.Background())
	tx, err := txs.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !inTx(tx) {
		t.Error("WithEagerBegin: no transaction after Current")
	}
	scope.Remove()
	bad := scoped.New(Tx(pool, pgx.TxOptions{BeginQuery: "BEGIN NONSENSE"}, WithEagerBegin()))
	ctx, scope = scoped.Begin(context.Background())
	defer scope.Remove()
	if _, err := bad.Current(ctx); err == nil {
		t.Error("WithEagerBegin: a failing BEGIN did not fail Current")
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired", n)
	}
}
