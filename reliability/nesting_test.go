package reliability_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// createCounter makes a one-row table (id 1, n 0) and drops it at the end.
func createCounter(t *testing.T, p *pool, prefix string) string {
	t.Helper()
	name := dbtest.Table(prefix)
	for _, q := range []string{
		"CREATE TABLE " + name + " (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
		"INSERT INTO " + name + " (id, n) VALUES (1, 0), (2, 0)",
	} {
		if _, err := p.admin.ExecContext(dbtest.Ctx(t), q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dbtest.Bound)
		defer cancel()
		if _, err := p.admin.ExecContext(ctx, "DROP TABLE "+name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return name
}

func counterValue(t *testing.T, p *pool, table string, id int) int {
	t.Helper()
	var n int
	if err := p.admin.QueryRowContext(dbtest.Ctx(t), sqlFor(p.srv, "SELECT n FROM "+table+" WHERE id = $1"), id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A service function run as its own unit of work inside a request updates
// the row its caller already updated: on a pool of one connection it
// completes (it used to wait for a second connection, or for its caller's
// row lock, forever), its rollback undoes only its own work, and the outer
// rollback undoes an inner unit that succeeded.
func TestNestedRunJoinsTheCallersTransaction(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := openPool(t, s, 1)
		table := createCounter(t, p, "scoped_nest")
		txs := scoped.New(scopedsql.Tx(p.DB, nil))
		add := func(ctx context.Context, d int) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, sqlFor(s, "UPDATE "+table+" SET n = n + $1 WHERE id = 1"), d)
			return err
		}
		errInner, errOuter := errors.New("inner fails"), errors.New("outer fails")
		ctx := dbtest.Ctx(t)

		// outer +1, inner +10 rolled back, inner +100 kept: 101.
		err := scoped.Run(ctx, func(ctx context.Context) error {
			if err := add(ctx, 1); err != nil {
				return err
			}
			if err := scoped.Run(ctx, func(ctx context.Context) error {
				if err := add(ctx, 10); err != nil {
					return err
				}
				return errInner
			}); !errors.Is(err, errInner) {
				return fmt.Errorf("failing inner unit returned %v", err)
			}
			return scoped.Run(ctx, func(ctx context.Context) error { return add(ctx, 100) })
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := counterValue(t, p, table, 1); n != 101 {
			t.Fatalf("counter %d, want 101 (the failed inner unit's +10 undone alone)", n)
		}

		// The outer rollback undoes an inner unit that succeeded.
		err = scoped.Run(ctx, func(ctx context.Context) error {
			if err := scoped.Run(ctx, func(ctx context.Context) error { return add(ctx, 1000) }); err != nil {
				return err
			}
			return errOuter
		})
		if !errors.Is(err, errOuter) {
			t.Fatalf("Run: %v, want the outer error", err)
		}
		if n := counterValue(t, p, table, 1); n != 101 {
			t.Fatalf("counter %d, want 101 (the outer rollback undoes the inner unit)", n)
		}
		if n := p.drain(); n != 0 {
			t.Fatalf("%d connections in use", n)
		}
	})
}

// A statement that fails inside a child unit (PostgreSQL then aborts the
// whole transaction) is undone with the child: the parent goes on and
// commits its own work.
func TestFailedStatementInChildLeavesParentUsable(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := openPool(t, s, 1)
		table := createCounter(t, p, "scoped_nestfail")
		txs := scoped.New(scopedsql.Tx(p.DB, nil))
		ctx := dbtest.Ctx(t)
		err := scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if err := scoped.Run(ctx, func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				_, err = tx.ExecContext(ctx, "INSERT INTO "+table+" (id, n) VALUES (1, 0)") // duplicate key
				return err
			}); err == nil {
				return errors.New("the duplicate insert succeeded")
			}
			_, err = tx.ExecContext(ctx, "UPDATE "+table+" SET n = 7 WHERE id = 2")
			return err
		})
		if err != nil {
			t.Fatalf("parent after a failed child statement: %v", err)
		}
		if n := counterValue(t, p, table, 2); n != 7 {
			t.Fatalf("counter 2 = %d, want 7", n)
		}
	})
}

// 16 goroutines incrementing one counter at SERIALIZABLE through Run and
// WithRetry end with the exact count on PostgreSQL: serialization failures
// (from statements and from COMMIT) are retried in fresh scopes.
func TestRetryOfSerializationFailuresGivesTheExactCount(t *testing.T) {
	s := dbtest.Postgres(t)
	p := openPool(t, s, 16)
	table := createCounter(t, p, "scoped_serial")
	txs := scoped.New(scopedsql.Tx(p.DB, &sql.TxOptions{Isolation: sql.LevelSerializable}))
	const workers, each = 16, 5
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	attempts := 0
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
					mu.Lock()
					attempts++
					mu.Unlock()
					tx, err := txs.Current(ctx)
					if err != nil {
						return err
					}
					var n int
					if err := tx.QueryRowContext(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
						return err
					}
					_, err = tx.ExecContext(ctx, "UPDATE "+table+" SET n = $1 WHERE id = 1", n+1)
					return err
				}, scoped.WithRetry(200, scopedsql.Retryable))
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d units failed, first: %v", len(errs), errs[0])
	}
	if n := counterValue(t, p, table, 1); n != workers*each {
		t.Fatalf("counter %d, want %d", n, workers*each)
	}
	t.Logf("%d increments took %d attempts", workers*each, attempts)
	if attempts == workers*each {
		t.Log("no serialization failure happened in this run: the retry path was not exercised")
	}
}

// A deadlock forced on MariaDB (two units locking two rows in opposite
// orders) is retried to success: both units commit.
func TestRetryOfDeadlockOnMariaDB(t *testing.T) {
	s := dbtest.MySQL(t)
	p := openPool(t, s, 4)
	table := createCounter(t, p, "scoped_deadlock")
	txs := scoped.New(scopedsql.Tx(p.DB, nil))
	var both sync.WaitGroup // first attempts hold their first lock before taking the second
	both.Add(2)
	var mu sync.Mutex
	attempts := 0
	unit := func(first, second int) error {
		return scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			mu.Lock()
			attempts++
			firstAttempt := attempts <= 2
			mu.Unlock()
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "UPDATE "+table+" SET n = n + 1 WHERE id = ?", first); err != nil {
				return err
			}
			if firstAttempt {
				both.Done()
				both.Wait()
			}
			_, err = tx.ExecContext(ctx, "UPDATE "+table+" SET n = n + 1 WHERE id = ?", second)
			return err
		}, scoped.WithRetry(10, scopedsql.Retryable))
	}
	errs := make(chan error, 2)
	go func() { errs <- unit(1, 2) }()
	go func() { errs <- unit(2, 1) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("unit failed: %v", err)
		}
	}
	if a, b := counterValue(t, p, table, 1), counterValue(t, p, table, 2); a != 2 || b != 2 {
		t.Fatalf("counters %d and %d, want 2 and 2", a, b)
	}
	if attempts < 3 {
		t.Fatalf("%d attempts: no deadlock was retried", attempts)
	}
}

// Retries stop at the context's deadline with the last error and the
// context's cause.
func TestRetriesStopAtTheDeadline(t *testing.T) {
	s := dbtest.Postgres(t)
	p := openPool(t, s, 1)
	txs := scoped.New(scopedsql.Tx(p.DB, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	attempts := 0
	err := scoped.Run(ctx, func(ctx context.Context) error {
		attempts++
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
		return err
	}, scoped.WithRetry(1_000_000, scopedsql.Retryable))
	if !errors.Is(err, context.DeadlineExceeded) || !scopedsql.Retryable(err) {
		t.Fatalf("Run: %v, want the last serialization failure and the deadline", err)
	}
	if attempts < 2 {
		t.Fatalf("%d attempts, want retries until the deadline", attempts)
	}
	if n := p.drain(); n != 0 {
		t.Fatalf("%d connections in use", n)
	}
}
