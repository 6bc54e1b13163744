package scopedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// The setup runs once per transaction, after BEGIN and before the unit's
// first statement; a child unit joins with a savepoint and does not run it
// again; the setup's transaction-local state does not reach the next
// transaction on the same connection (a pool of one).
func TestNewTxSetupRunsOncePerTransaction(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		table := dbtest.CreateIDTable(t, db, "setup_once")
		var runs atomic.Int32
		txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(func(ctx context.Context, tx *sql.Tx) error {
			runs.Add(1)
			_, err := tx.ExecContext(ctx, s.InsertID(table), 7) // the setup's own statement, in the unit's transaction
			return err
		}), scoped.WithName("setup"))

		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if got := dbtest.IDs(t, tx, table); !slices.Equal(got, []int64{7}) {
				t.Errorf("the unit's first statement sees %v, want the setup's row [7]", got)
			}
			return scoped.Run(ctx, func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				_, err = tx.ExecContext(ctx, s.InsertID(table), 8)
				return err
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := runs.Load(); n != 1 {
			t.Errorf("setup ran %d times for one transaction with a child unit, want 1", n)
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{7, 8}) {
			t.Errorf("committed %v, want [7 8]", got)
		}
	})
}

// A setup's transaction-local settings (set_config(..., true)) are seen by
// the unit and by nobody after it on the same connection.
func TestNewTxSetupStateIsTransactionLocal(t *testing.T) {
	t.Parallel()
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	db.SetMaxOpenConns(1)
	txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "SELECT set_config('app.tenant_id', $1, true)", "tenant-a")
		return err
	}))
	setting := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) string {
		var v sql.NullString
		if err := q.QueryRowContext(dbtest.Ctx(t), "SELECT current_setting('app.tenant_id', true)").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v.String
	}
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		if got := setting(tx); got != "tenant-a" {
			t.Errorf("in the unit: app.tenant_id = %q, want tenant-a", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := setting(db); got != "" {
		t.Errorf("after the unit, on the same connection: app.tenant_id = %q, want empty", got)
	}
}

var errNoTenant = errors.New("no tenant")

// Fail closed: a setup that returns an error, or whose statement fails,
// fails the unit's first Current with that error; nothing of the unit
// runs, what the setup did is rolled back, the connection goes back.
func TestNewTxSetupFailsClosed(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		table := dbtest.CreateIDTable(t, db, "setup_closed")
		cases := []struct {
			name  string
			setup func(ctx context.Context, tx *sql.Tx) error
			want  func(error) bool
		}{
			{"setup returns an error", func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, s.InsertID(table), 1); err != nil {
					return err
				}
				return errNoTenant
			}, func(err error) bool { return errors.Is(err, errNoTenant) }},
			{"setup statement fails", func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, s.InsertID(table), 2); err != nil {
					return err
				}
				_, err := tx.ExecContext(ctx, "SELECT no_such_column FROM "+table)
				return err
			}, func(err error) bool { return err != nil && !errors.Is(err, errNoTenant) }},
		}
		for _, c := range cases {
			txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(c.setup))
			ran := false
			err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
				if _, err := txs.Current(ctx); err != nil {
					return err
				}
				ran = true
				return nil
			})
			if !c.want(err) {
				t.Errorf("%s: Run = %v", c.name, err)
			}
			if ran {
				t.Errorf("%s: Current returned a transaction", c.name)
			}
			wantInUse(t, db, 0)
		}
		if got := dbtest.IDs(t, db, table); len(got) != 0 {
			t.Errorf("the failed setups' rows were committed: %v", got)
		}
	})
}

// Per-unit options are set in one line before the unit begins: a
// read-only unit cannot write; set inside a scope they are an error, not
// silently ignored.
func TestWithTxOptionsReadOnlyUnit(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		table := dbtest.CreateIDTable(t, db, "setup_ro")
		for i, txs := range []*scoped.ScopedSession[*sql.Tx]{
			scopedsql.NewTx(db, nil),
			scoped.New(scopedsql.Tx(db, nil)),
		} {
			ctx, err := scopedsql.WithTxOptions(dbtest.Ctx(t), sql.TxOptions{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			err = scoped.Run(ctx, func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				_, err = tx.ExecContext(ctx, s.InsertID(table), 1)
				return err
			})
			if err == nil {
				t.Error("a write in a read-only unit succeeded")
			}
			err = scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
				if _, err := scopedsql.WithTxOptions(ctx, sql.TxOptions{ReadOnly: true}); !errors.Is(err, scopedsql.ErrTxOptionsLate) {
					t.Errorf("WithTxOptions inside a scope = %v, want ErrTxOptionsLate", err)
				}
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				_, err = tx.ExecContext(ctx, s.InsertID(table), 10+i)
				return err
			})
			if err != nil {
				t.Errorf("a unit without options: %v", err)
			}
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{10, 11}) {
			t.Errorf("committed %v, want [10 11]: the read-only units wrote, or the others did not", got)
		}
	})
}

// Isolation level and DEFERRABLE reach the transaction (PostgreSQL, which
// reports them), laid over the factory's own options. Not SERIALIZABLE
// READ ONLY DEFERRABLE, which waits for a safe snapshot as long as the
// server's other serializable transactions (other tests) make it wait.
func TestWithTxOptionsIsolationAndDeferrable(t *testing.T) {
	t.Parallel()
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	txs := scopedsql.NewTx(db, &sql.TxOptions{Isolation: sql.LevelSerializable})
	ctx, err := scopedsql.WithTxOptions(dbtest.Ctx(t), sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if ctx, err = scopedsql.WithDeferrable(ctx); err != nil {
		t.Fatal(err)
	}
	var iso, ro, def string
	err = scoped.Run(ctx, func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, "SELECT current_setting('transaction_isolation'), "+
			"current_setting('transaction_read_only'), current_setting('transaction_deferrable')").Scan(&iso, &ro, &def)
	})
	if err != nil {
		t.Fatal(err)
	}
	if iso != "repeatable read" || ro != "on" || def != "on" {
		t.Errorf("isolation %q, read only %q, deferrable %q; want repeatable read, on, on", iso, ro, def)
	}
	err = scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, "SELECT current_setting('transaction_isolation')").Scan(&iso)
	})
	if err != nil {
		t.Fatal(err)
	}
	if iso != "serializable" {
		t.Errorf("a unit without options: isolation %q, want the factory's serializable", iso)
	}
}

// StatementTimeout bounds the unit's statements by its deadline, for its
// transaction only; without a deadline it sends nothing.
func TestStatementTimeoutFromDeadline(t *testing.T) {
	t.Parallel()
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	db.SetMaxOpenConns(1)
	txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(scopedsql.StatementTimeout))
	show := func(ctx context.Context) (ms int64) {
		err := scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			return tx.QueryRowContext(ctx, "SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'").Scan(&ms)
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
	// The deadline drives the server: a statement that outlives it is
	// cancelled there (57014).
	short, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := scoped.Run(short, func(ctx context.Context) error {
		tx, err := txs.Current(context.WithoutCancel(ctx))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(context.WithoutCancel(ctx), "SELECT pg_sleep(30)")
		return err
	})
	if pqErr := (*pq.Error)(nil); !errors.As(err, &pqErr) || pqErr.Code != "57014" {
		t.Fatalf("a statement past its unit's deadline: %v, want the server's query_canceled (57014)", err)
	}
}
