package scopedpgxtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
)

// A second transaction waits for the open one to end, then sees what it
// committed: concurrent scopes of a test run one after another.
func TestIsolatedTransactionsRunOneAtATime(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_serial")
	db := Isolate(t, pool)
	txs := db.NewTx()
	ctx := dbtest.Ctx(t)

	actx, a := scoped.Begin(ctx)
	defer a.Remove()
	atx, err := txs.Current(actx)
	if err != nil {
		t.Fatal(err)
	}
	if err := insert(actx, atx, table, 1); err != nil {
		t.Fatal(err)
	}
	seen := make(chan []int, 1)
	errs := make(chan error, 1)
	go func() {
		errs <- scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx) // waits for a
			if err != nil {
				return err
			}
			seen <- idsIn(ctx, t, tx, table)
			return insert(ctx, tx, table, 2)
		})
	}()
	testkit.Eventually(t, "the second scope waiting", func() bool { return db.waiting.Load() == 1 })
	// Outside any transaction, a statement does not wait: it runs in a's.
	if got := ids(t, db, table); !slices.Equal(got, []int{1}) {
		t.Errorf("a statement outside the transactions sees %v, want [1] (a's uncommitted row)", got)
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := testkit.WaitFor(t, seen, "the second scope"); !slices.Equal(got, []int{1}) {
		t.Errorf("the second scope sees %v, want [1], the first's committed row", got)
	}
	if err := testkit.WaitFor(t, errs, "the second scope to end"); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, db, table); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("ids %v, want [1 2]", got)
	}
}

// The documented limit: an independent unit of work inside an open scope
// waits for that scope, which waits for it. It fails when its context
// ends, saying where the open transaction was begun, instead of hanging
// for good; and the enclosing scope goes on.
func TestIsolatedIndependentUnitInsideAScopeWaitsForItsContext(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_indep")
	db := Isolate(t, pool)
	txs := db.NewTx()
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		tx, err := txs.Current(ctx) // begun here
		if err != nil {
			return err
		}
		if err := insert(ctx, tx, table, 1); err != nil {
			return err
		}
		ictx, icancel := context.WithCancel(ctx)
		defer icancel()
		go func() {
			testkit.Eventually(t, "the independent unit waiting", func() bool { return db.waiting.Load() == 1 })
			icancel()
		}()
		ierr := scoped.Run(ictx, func(ctx context.Context) error {
			_, err := txs.Current(ctx)
			return err
		}, scoped.Independent())
		t.Logf("independent unit: %v", ierr)
		if !errors.Is(ierr, context.Canceled) || !strings.Contains(ierr.Error(), "concurrency_test.go") {
			t.Errorf("independent unit: %v, want context.Canceled and where the open transaction was begun", ierr)
		}
		return insert(ctx, tx, table, 2)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, db, table); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("ids %v, want [1 2]", got)
	}
}

// Without a deadline (t.Context()), a transaction begun inside the open
// one on the same goroutine fails after slotWait instead of hanging until
// the test binary's timeout.
func TestIsolatedWaitForTheOpenTransactionIsBounded(t *testing.T) {
	old := slotWait
	slotWait = 200 * time.Millisecond
	defer func() { slotWait = old }()
	pool := newPool(t, 2)
	db := Isolate(t, pool)
	txs := db.NewTx()
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		if _, err := txs.Current(ctx); err != nil {
			return err
		}
		ierr := scoped.Run(ctx, func(ctx context.Context) error {
			_, err := txs.Current(ctx)
			return err
		}, scoped.Independent())
		if !errors.Is(ierr, errSlotWait) || !strings.Contains(ierr.Error(), "concurrency_test.go") {
			t.Errorf("independent unit: %v, want a bounded wait naming where the open transaction was begun", ierr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// backendActive returns once db's connection runs a statement that
// starts with prefix, as pg_stat_activity shows on another connection.
func backendActive(t *testing.T, db *DB, prefix string) {
	t.Helper()
	c, err := pgx.Connect(dbtest.Ctx(t), dbtest.Postgres(t).DSN)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close(context.Background())
	pid := int32(db.c.PgConn().PID())
	testkit.Eventually(t, "the statement to run", func() bool {
		var n int
		err := c.QueryRow(dbtest.Ctx(t), `SELECT count(*) FROM pg_stat_activity
			WHERE pid = $1 AND state = 'active' AND starts_with(query, $2)`, pid, prefix).Scan(&n)
		return err != nil || n > 0
	})
}

// A statement whose context ends while it runs fails with the context's
// error, as on a pool, and the test's transaction and connection stay:
// outside a transaction, the statement's savepoint is rolled back; in a
// scope (ended by its safety net on another goroutine), the scope's.
func TestIsolatedStatementCancelledByItsContextLeavesTheTestRunning(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_cancel")
	db := Isolate(t, pool)
	txs := db.NewTx(scoped.WithTeardownErrorHook(nil))
	if err := insert(dbtest.Ctx(t), db, table, 1); err != nil {
		t.Fatal(err)
	}
	for _, inScope := range []bool{false, true} {
		t.Run(fmt.Sprintf("in a scope %v", inScope), func(t *testing.T) {
			base, cancel := context.WithCancel(dbtest.Ctx(t))
			defer cancel()
			ctx, scope := scoped.Begin(base)
			defer scope.Remove()
			var e execer = db
			if inScope {
				tx, err := txs.Current(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := insert(ctx, tx, table, 2); err != nil {
					t.Fatal(err)
				}
				e = tx
			}
			go func() {
				backendActive(t, db, "SELECT pg_sleep(60)")
				cancel()
			}()
			if _, err := e.Exec(ctx, "SELECT pg_sleep(60)"); !errors.Is(err, context.Canceled) {
				t.Errorf("the cancelled statement: %v, want an error wrapping context.Canceled", err)
			}
			if err := scope.Remove(); err != nil {
				t.Errorf("Remove: %v", err)
			}
			if got := ids(t, db, table); !slices.Equal(got, []int{1}) {
				t.Errorf("ids %v, want [1]", got)
			}
		})
	}
	if err := db.Ping(dbtest.Ctx(t)); err != nil {
		t.Errorf("the connection after the cancellations: %v", err)
	}
}

// Scopes and statements from many goroutines share the one connection
// without error (and without a data race, under -race), and what the
// scopes commit stays.
func TestIsolatedSharedByGoroutines(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_shared")
	db := Isolate(t, pool)
	txs := db.NewTx()
	const workers, rounds = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				id := w*rounds + r
				var err error
				switch r % 3 {
				case 0: // outside any transaction
					err = insert(dbtest.Ctx(t), db, table, id)
				case 1: // a scope that commits, with a child that rolls back
					err = scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
						tx, err := txs.Current(ctx)
						if err != nil {
							return err
						}
						if err := insert(ctx, tx, table, id); err != nil {
							return err
						}
						_ = scoped.Run(ctx, func(ctx context.Context) error {
							tx, err := txs.Current(ctx)
							if err == nil {
								err = insert(ctx, tx, table, 1000+id)
							}
							return errors.Join(err, errChild)
						})
						rs, err := tx.Query(ctx, "SELECT id FROM "+table)
						if err != nil {
							return err
						}
						_, err = pgx.CollectRows(rs, pgx.RowTo[int])
						return err
					})
				case 2: // a scope that rolls back
					err = scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
						tx, err := txs.Current(ctx)
						if err == nil {
							err = insert(ctx, tx, table, 2000+id)
						}
						return errors.Join(err, errChild)
					})
					if errors.Is(err, errChild) {
						err = nil
					}
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Scopes that committed left their rows, and nothing else is there
	// but statements outside any transaction, which may have run inside a
	// scope that rolled back and gone with it (as documented).
	got := ids(t, db, table)
	for w := range workers {
		for r := range rounds {
			id := w*rounds + r
			if r%3 == 1 && !slices.Contains(got, id) {
				t.Errorf("committed scope %d: row missing from %v", id, got)
			}
		}
	}
	for _, id := range got {
		if id >= workers*rounds || id%rounds%3 == 2 {
			t.Errorf("row %d of a child or scope that rolled back is in %v", id, got)
		}
	}
}
