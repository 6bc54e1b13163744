package scopedpgx

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var errNoTenant = errors.New("no tenant")

type tenantKey struct{}

// setTenant is the row-level security setup: the tenant of the unit's
// context, transaction-local, queued with BEGIN.
func setTenant(ctx context.Context, b *pgx.Batch) error {
	tenant, ok := ctx.Value(tenantKey{}).(string)
	if !ok {
		return errNoTenant
	}
	b.Queue("select set_config('app.tenant_id', $1, true)", tenant)
	return nil
}

// TestSetupRidesWithBeginAndFirstStatement: the setup's statements travel
// in the pipeline of BEGIN and the unit's first statement, whatever that
// statement is: the unit costs exactly the round trips it costs without a
// setup, one less than pgx's own transaction without one.
func TestSetupRidesWithBeginAndFirstStatement(t *testing.T) {
	p := newProxy(t, 0)
	pool := p.pool(t, 1) // one connection: its statement cache is warm after the first round
	for name, call := range firstCalls {
		t.Run(name, func(t *testing.T) {
			table := newTable(t, pool, "rt_setup")
			txs := NewTx(pool, pgx.TxOptions{}, WithSetup(setTenant))
			unit := func(ctx context.Context, tx pgx.Tx) error {
				if err := call(ctx, tx, table); err != nil {
					return err
				}
				return nil
			}
			ctx := context.WithValue(context.Background(), tenantKey{}, "tenant-a")
			for i := 0; i < 2; i++ {
				if _, err := setupRoundTrips(t, p, ctx, txs, unit); err != nil {
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
			got, err := setupRoundTrips(t, p, ctx, txs, unit)
			if err != nil {
				t.Fatal(err)
			}
			if got.first != want.first {
				t.Errorf("setup, BEGIN and the statements took %d round trips, want %d (pgx's own without BEGIN or setup)", got.first, want.first)
			}
			if got.total != want.total-1 {
				t.Errorf("unit of work with a setup took %d round trips, want %d (one less than pgx's own %d without one)", got.total, want.total-1, want.total)
			}
			if n := len(ids(t, pool, table)); n != 1 {
				t.Errorf("%d rows committed, want 1", n)
			}
		})
	}
}

// setupRoundTrips is runRoundTrips in a scope begun with ctx, which also
// checks that the setup's setting is there in the unit.
func setupRoundTrips(t testing.TB, p *proxy, ctx context.Context, txs *scoped.ScopedSession[pgx.Tx], unit func(context.Context, pgx.Tx) error) (trips, error) {
	t.Helper()
	ctx, scope := scoped.Begin(ctx)
	defer scope.Remove()
	start := p.roundTrips.Load()
	tx, err := txs.Current(ctx)
	if err != nil {
		return trips{}, err
	}
	began := p.roundTrips.Load()
	if err := unit(ctx, tx); err != nil {
		return trips{}, err
	}
	r := trips{first: p.roundTrips.Load() - began, began: inTx(tx)}
	check := p.roundTrips.Load()
	var tenant string
	if err := tx.QueryRow(ctx, "select current_setting('app.tenant_id')").Scan(&tenant); err != nil {
		return r, err
	}
	if tenant != "tenant-a" {
		t.Errorf("app.tenant_id = %q in the unit, want tenant-a", tenant)
	}
	checked := p.roundTrips.Load() - check
	if err := scope.Commit(); err != nil {
		return r, err
	}
	r.total = p.roundTrips.Load() - start - checked
	return r, nil
}

// A unit with a setup that runs no statement sends nothing, and a setup
// that fails sends nothing either and takes no connection.
func TestSetupUnitWithoutStatementSendsNothing(t *testing.T) {
	p := newProxy(t, 0)
	pool := p.pool(t, 1)
	txs := NewTx(pool, pgx.TxOptions{}, WithSetup(setTenant))
	for _, tenant := range []string{"tenant-a", ""} {
		ctx := context.Background()
		if tenant != "" {
			ctx = context.WithValue(ctx, tenantKey{}, tenant)
		}
		ctx, scope := scoped.Begin(ctx)
		start := p.messages.Load()
		_, err := txs.Current(ctx)
		if tenant == "" && !errors.Is(err, errNoTenant) {
			t.Errorf("Current without a tenant = %v, want errNoTenant", err)
		} else if tenant != "" && err != nil {
			t.Fatal(err)
		}
		if err := scope.Commit(); err != nil {
			t.Fatalf("tenant %q: commit: %v", tenant, err)
		}
		if n := p.messages.Load() - start; n != 0 {
			t.Errorf("tenant %q: the unit sent %d messages, want none", tenant, n)
		}
		if n := pool.Stat().AcquiredConns(); n != 0 {
			t.Errorf("tenant %q: %d connections acquired after the scope", tenant, n)
		}
	}
}

// Fail closed: a setup statement that fails fails the unit's first
// statement with its error, the statement does not run, every later call
// fails too, the commit fails, and the connection goes back clean.
func TestSetupStatementFailureFailsTheUnit(t *testing.T) {
	pool := newPool(t, 1)
	table := newTable(t, pool, "setup_fail")
	var runs atomic.Int32
	txs := NewTx(pool, pgx.TxOptions{}, WithSetup(func(ctx context.Context, b *pgx.Batch) error {
		runs.Add(1)
		b.Queue("select $1::int", "not a number")
		return nil
	}))
	for _, eager := range []bool{false, true} {
		s := txs
		if eager {
			s = NewTx(pool, pgx.TxOptions{}, WithEagerBegin(), WithSetup(func(ctx context.Context, b *pgx.Batch) error {
				b.Queue("select $1::int", "not a number")
				return nil
			}))
		}
		ctx, scope := scoped.Begin(context.Background())
		tx, err := s.Current(ctx)
		if eager {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "22P02" {
				t.Errorf("eager: Current = %v, want the setup's 22P02", err)
			}
			scope.Remove()
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", 1)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "22P02" {
			t.Errorf("first statement = %v, want the setup's 22P02", err)
		}
		if _, err2 := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", 2); err2 == nil {
			t.Error("a statement after the failed setup ran")
		}
		if err := scope.Commit(); err == nil {
			t.Error("the unit whose setup failed committed")
		}
	}
	if got := ids(t, pool, table); len(got) != 0 {
		t.Errorf("rows %v committed by units whose setup failed", got)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired", n)
	}
}

// Once per transaction: a child unit joins with a savepoint and runs no
// setup again.
func TestSetupRunsOncePerTransaction(t *testing.T) {
	pool := newPool(t, 1)
	table := newTable(t, pool, "setup_once")
	var runs atomic.Int32
	txs := NewTx(pool, pgx.TxOptions{}, WithSetup(func(ctx context.Context, b *pgx.Batch) error {
		runs.Add(1)
		return setTenant(ctx, b)
	}))
	ctx := context.WithValue(context.Background(), tenantKey{}, "tenant-a")
	err := scoped.Run(ctx, func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", 1); err != nil {
			return err
		}
		return scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			var tenant string
			if err := tx.QueryRow(ctx, "select current_setting('app.tenant_id')").Scan(&tenant); err != nil {
				return err
			}
			if tenant != "tenant-a" {
				t.Errorf("child unit: app.tenant_id = %q", tenant)
			}
			_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", 2)
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("setup ran %d times, want 1", n)
	}
	if got := ids(t, pool, table); len(got) != 2 {
		t.Errorf("committed %v, want [1 2]", got)
	}
	var leaked *string
	if err := pool.QueryRow(context.Background(), "select current_setting('app.tenant_id', true)").Scan(&leaked); err != nil {
		t.Fatal(err)
	}
	if leaked != nil && *leaked != "" {
		t.Errorf("app.tenant_id = %q on the connection after the unit", *leaked)
	}
}

// Per-unit options: read-only set before the unit begins reaches the lazy
// BEGIN; inside a scope it is an error.
func TestWithTxOptionsReadOnlyUnit(t *testing.T) {
	pool := newPool(t, 1)
	table := newTable(t, pool, "ro_unit")
	txs := NewTx(pool, pgx.TxOptions{})
	ctx, err := WithTxOptions(context.Background(), pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.Serializable})
	if err != nil {
		t.Fatal(err)
	}
	err = scoped.Run(ctx, func(ctx context.Context) error {
		if _, err := WithTxOptions(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly}); !errors.Is(err, ErrTxOptionsLate) {
			t.Errorf("WithTxOptions inside a scope = %v, want ErrTxOptionsLate", err)
		}
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		var iso string
		if err := tx.QueryRow(ctx, "select current_setting('transaction_isolation')").Scan(&iso); err != nil {
			return err
		}
		if iso != "serializable" {
			t.Errorf("isolation %q, want serializable", iso)
		}
		_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", 1)
		return err
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Errorf("a write in a read-only unit: %v, want 25006", err)
	}
}

// StatementTimeout bounds the unit's statements by its deadline, in its
// transaction only, and rides with BEGIN.
func TestStatementTimeoutFromDeadline(t *testing.T) {
	pool := newPool(t, 1)
	txs := NewTx(pool, pgx.TxOptions{}, WithSetup(StatementTimeout))
	show := func(ctx context.Context) (ms int64) {
		err := scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			return tx.QueryRow(ctx, "select setting::bigint from pg_settings where name = 'statement_timeout'").Scan(&ms)
		})
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if ms := show(ctx); ms <= 0 || ms > time.Hour.Milliseconds() {
		t.Errorf("with an hour's deadline: statement_timeout = %d ms, want within (0, 3600000]", ms)
	}
	if ms := show(context.Background()); ms != 0 {
		t.Errorf("without a deadline, on the same connection after a unit with one: statement_timeout = %d ms, want 0", ms)
	}
	// A deadline past the largest value PostgreSQL takes (2^31-1 ms, about
	// 24.8 days) is the largest bound, not a failed setup (it was: 22023).
	far, cancelFar := context.WithTimeout(context.Background(), 30*24*time.Hour)
	defer cancelFar()
	if ms := show(far); ms != math.MaxInt32 {
		t.Errorf("with a 30-day deadline: statement_timeout = %d ms, want %d", ms, math.MaxInt32)
	}
}
