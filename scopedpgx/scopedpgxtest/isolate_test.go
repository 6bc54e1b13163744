package scopedpgxtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedpgx"
)

// Everything a test writes, through scopes that commit, transactions that
// commit and statements outside any transaction, is visible to the rest
// of the test and gone after it; its connection is never counted as
// acquired from the pool.
func TestIsolatedWritesAreGoneAfterTheTest(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_gone")
	t.Run("test", func(t *testing.T) {
		db := Isolate(t, pool)
		txs := db.NewTx()
		ctx := dbtest.Ctx(t)
		if err := scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			return insert(ctx, tx, table, 1)
		}); err != nil {
			t.Fatal(err)
		}
		if err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error { return insert(ctx, tx, table, 2) }); err != nil {
			t.Fatal(err)
		}
		if err := insert(ctx, db, table, 3); err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		b.Queue("INSERT INTO "+table+" (id) VALUES ($1)", 4)
		if err := db.SendBatch(ctx, b).Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := db.CopyFrom(ctx, pgx.Identifier{strings.Trim(table, `"`)}, []string{"id"}, pgx.CopyFromRows([][]any{{5}})); err != nil {
			t.Fatal(err)
		}
		if got := ids(t, db, table); !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
			t.Errorf("within the test: ids %v, want [1 2 3 4 5]", got)
		}
		if got := ids(t, pool, table); len(got) != 0 {
			t.Errorf("outside the test, during it: ids %v, want none", got)
		}
		if n := pool.Stat().AcquiredConns(); n != 0 {
			t.Errorf("%d connections acquired during the test, want none: the test's has left the pool", n)
		}
	})
	if got := ids(t, pool, table); len(got) != 0 {
		t.Errorf("after the test: ids %v, want none", got)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired after the test", n)
	}
}

// Two tests, each with its own isolated database on the same table, see
// their own rows only, even while both are running.
func TestIsolatedTestsDoNotSeeEachOthersRows(t *testing.T) {
	pool := newPool(t, 4)
	table := newTable(t, pool, "pgxtest_apart")
	t.Run("interleaved", func(t *testing.T) {
		a, b := Isolate(t, pool), Isolate(t, pool)
		ctx := dbtest.Ctx(t)
		if err := insert(ctx, a, table, 1); err != nil {
			t.Fatal(err)
		}
		if err := insert(ctx, b, table, 2); err != nil {
			t.Fatal(err)
		}
		if got := ids(t, a, table); !slices.Equal(got, []int{1}) {
			t.Errorf("first test sees %v, want [1]", got)
		}
		if got := ids(t, b, table); !slices.Equal(got, []int{2}) {
			t.Errorf("second test sees %v, want [2]", got)
		}
	})
	t.Run("parallel", func(t *testing.T) {
		for id := range 4 {
			t.Run(fmt.Sprint(id), func(t *testing.T) {
				t.Parallel()
				db := Isolate(t, pool)
				txs := db.NewTx()
				for range 20 {
					if err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
						tx, err := txs.Current(ctx)
						if err != nil {
							return err
						}
						if err := insert(ctx, tx, table, id); err != nil {
							return err
						}
						if got := ids(t, tx, table); !slices.Equal(got, []int{id}) {
							t.Errorf("test %d sees %v", id, got)
						}
						return errors.New("roll back")
					}); err == nil {
						t.Fatal("Run did not fail")
					}
				}
			})
		}
	})
	if got := ids(t, pool, table); len(got) != 0 {
		t.Errorf("after the tests: ids %v, want none", got)
	}
}

// Within the test, a scope that rolls back leaves nothing, and one that
// commits is seen by every later statement and scope.
func TestIsolatedScopesCommitAndRollBackWithinTheTest(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_scopes")
	db := Isolate(t, pool)
	txs := db.NewTx()
	q := scopedpgx.NewDBTX(db, txs)
	outside := dbtest.Ctx(t)
	for _, tc := range []struct {
		name   string
		commit bool
		want   []int
	}{
		{"rolled back", false, nil},
		{"committed", true, []int{1}},
		{"rolled back after a commit", false, []int{1}},
	} {
		ctx, scope := scoped.Begin(dbtest.Ctx(t))
		id := len(tc.want) + 1
		if tc.commit {
			id = 1
		}
		if err := insert(ctx, q, table, id); err != nil {
			t.Fatal(err)
		}
		if got := idsIn(ctx, t, q, table); !slices.Contains(got, id) {
			t.Fatalf("%s: the scope does not see its own row: %v", tc.name, got)
		}
		end := scope.Remove
		if tc.commit {
			end = scope.Commit
		}
		if err := end(); err != nil {
			t.Fatal(err)
		}
		if got := ids(t, q, table); !slices.Equal(got, tc.want) {
			t.Errorf("%s: afterwards, outside the scope: ids %v, want %v", tc.name, got, tc.want)
		}
		var seen []int
		if err := scoped.Run(outside, func(ctx context.Context) error {
			seen = idsIn(ctx, t, q, table)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(seen, tc.want) {
			t.Errorf("%s: afterwards, in a later scope: ids %v, want %v", tc.name, seen, tc.want)
		}
	}
	if st := txs.Stats(); st.Committed != 4 || st.RolledBack != 2 {
		t.Errorf("stats %+v, want 4 committed (one write, three reads) and 2 rolled back", st)
	}
}

// A statement that fails outside any transaction fails alone, as on a
// pool: the test goes on and what it wrote before stays. A failing batch
// takes none of its statements with it, as PostgreSQL runs a batch.
func TestIsolatedFailingStatementDoesNotAbortTheTest(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_fail")
	db := Isolate(t, pool)
	ctx := dbtest.Ctx(t)
	if err := insert(ctx, db, table, 1); err != nil {
		t.Fatal(err)
	}
	var pgErr *pgconn.PgError
	if err := insert(ctx, db, table, 1); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("duplicate insert: %v, want a unique violation", err)
	}
	if err := db.QueryRow(ctx, "SELECT 1/0").Scan(new(int)); !errors.As(err, &pgErr) || pgErr.Code != "22012" {
		t.Fatalf("QueryRow: %v, want a division by zero", err)
	}
	b := &pgx.Batch{}
	b.Queue("INSERT INTO " + table + " (id) VALUES (2)")
	b.Queue("INSERT INTO " + table + " (id) VALUES (1)") // fails
	if err := db.SendBatch(ctx, b).Close(); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("batch: %v, want a unique violation", err)
	}
	if _, err := db.CopyFrom(ctx, pgx.Identifier{strings.Trim(table, `"`)}, []string{"id"},
		pgx.CopyFromRows([][]any{{3}, {1}})); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("CopyFrom: %v, want a unique violation", err)
	}
	if err := insert(ctx, db, table, 4); err != nil {
		t.Fatalf("a statement after the failures: %v", err)
	}
	if got := ids(t, db, table); !slices.Equal(got, []int{1, 4}) {
		t.Errorf("ids %v, want [1 4]", got)
	}
}

// A statement that fails inside a scope's transaction aborts it, as on a
// pool: the scope's commit fails with pgx.ErrTxCommitRollback and its
// work is gone, while the test goes on.
func TestIsolatedFailedScopeCommitsAsARealOne(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_abort")
	for _, tc := range []struct {
		name string
		txs  func(t *testing.T) (*scoped.ScopedSession[pgx.Tx], querier)
	}{
		{"real pool", func(t *testing.T) (*scoped.ScopedSession[pgx.Tx], querier) {
			return scopedpgx.NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil)), pool
		}},
		{"isolated", func(t *testing.T) (*scoped.ScopedSession[pgx.Tx], querier) {
			db := Isolate(t, pool)
			return db.NewTx(scoped.WithTeardownErrorHook(nil)), db
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			txs, q := tc.txs(t)
			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			defer scope.Remove()
			tx, err := txs.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := insert(ctx, tx, table, 1); err != nil {
				t.Fatal(err)
			}
			if err := insert(ctx, tx, table, 1); err == nil {
				t.Fatal("duplicate insert succeeded")
			}
			if err := insert(ctx, tx, table, 2); err == nil || !strings.Contains(err.Error(), "25P02") {
				t.Errorf("a statement after the failure: %v, want 25P02 (transaction aborted)", err)
			}
			if err := scope.Commit(); !errors.Is(err, pgx.ErrTxCommitRollback) {
				t.Errorf("Commit: %v, want pgx.ErrTxCommitRollback", err)
			}
			if got := ids(t, q, table); len(got) != 0 {
				t.Errorf("ids %v, want none", got)
			}
		})
	}
}

// Statements outside a transaction may run while rows are being read, as
// on a pool, and so may statements of the transaction itself.
func TestIsolatedRowsDoNotHoldTheConnection(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_loop")
	db := Isolate(t, pool)
	ctx := dbtest.Ctx(t)
	for base, q := range []interface {
		querier
		execer
	}{db, mustBegin(t, db)} {
		rs, err := q.Query(ctx, "SELECT g FROM generate_series(1, 3) g")
		if err != nil {
			t.Fatal(err)
		}
		for rs.Next() {
			var g int
			if err := rs.Scan(&g); err != nil {
				t.Fatal(err)
			}
			if err := insert(ctx, q, table, 10*base+g); err != nil {
				t.Fatal(err)
			}
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got := ids(t, db, table); !slices.Equal(got, []int{1, 2, 3, 11, 12, 13}) {
		t.Errorf("ids %v", got)
	}
}

func mustBegin(t *testing.T, db *DB) pgx.Tx {
	t.Helper()
	tx, err := db.Begin(dbtest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// Whatever a test leaves (rows never closed, a transaction never ended,
// a scope removed without commit, a transaction waiting for another), and
// however it stops (here t.SkipNow, which stops the test as t.Fatal does),
// its transaction is rolled back, its connection leaves the pool's
// acquired ones, and no goroutine stays (TestMain checks).
func TestIsolatedLeavesNothingBehind(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_left")
	waited := make(chan error, 1)
	t.Run("test", func(t *testing.T) {
		db := Isolate(t, pool)
		txs := db.NewTx()
		ctx := dbtest.Ctx(t)
		if err := insert(ctx, db, table, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Query(ctx, "SELECT id FROM "+table); err != nil { // never closed
			t.Fatal(err)
		}
		sctx, scope := scoped.Begin(ctx)
		tx, err := txs.Current(sctx)
		if err == nil {
			err = insert(sctx, tx, table, 2)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := scope.Remove(); err != nil { // not committed
			t.Fatal(err)
		}
		open := mustBeginNoCleanup(t, db) // never ended
		if err := insert(ctx, open, table, 3); err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := db.Begin(context.Background()) // waits for open, which never ends
			waited <- err
		}()
		testkit.Eventually(t, "a transaction waiting for the open one", func() bool { return db.waiting.Load() == 1 })
		t.SkipNow()
	})
	if err := testkit.WaitFor(t, waited, "the waiting Begin to return"); !errors.Is(err, ErrClosed) {
		t.Errorf("the waiting Begin returned %v, want ErrClosed", err)
	}
	if got := ids(t, pool, table); len(got) != 0 {
		t.Errorf("after the test: ids %v, want none", got)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired after the test", n)
	}
}

func mustBeginNoCleanup(t *testing.T, db *DB) pgx.Tx {
	t.Helper()
	tx, err := db.Begin(dbtest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// COMMIT run as SQL text commits the test's transaction: the isolation
// cannot undo that, so every later call fails with ErrBroken and the test
// fails, saying so.
func TestIsolatedCommitAsSQLTextBreaksTheTest(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxtest_broken")
	ft := &dbtest.FakeTB{TB: t}
	db := Isolate(ft, pool)
	ctx := dbtest.Ctx(t)
	if err := insert(ctx, db, table, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "COMMIT"); !errors.Is(err, ErrBroken) {
		t.Errorf("COMMIT as SQL text: %v, want an error wrapping ErrBroken", err)
	}
	if err := insert(ctx, db, table, 2); !errors.Is(err, ErrBroken) {
		t.Errorf("a statement after it: %v, want an error wrapping ErrBroken", err)
	}
	if _, err := db.Begin(ctx); !errors.Is(err, ErrBroken) {
		t.Errorf("Begin after it: %v, want an error wrapping ErrBroken", err)
	}
	errs := ft.End()
	if len(errs) != 1 || !strings.Contains(errs[0], "may have been committed") {
		t.Errorf("the test's end reported %q, want that its writes may have been committed", errs)
	}
	if got := ids(t, pool, table); !slices.Equal(got, []int{1}) {
		t.Errorf("ids %v, want [1], committed by the COMMIT", got)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired after the test", n)
	}
}

// A call after the test has ended fails with ErrClosed, whatever it is.
func TestIsolatedCallsAfterTheTestFail(t *testing.T) {
	pool := newPool(t, 2)
	var db *DB
	var tx pgx.Tx
	var rs pgx.Rows
	t.Run("test", func(t *testing.T) {
		db = Isolate(t, pool)
		tx = mustBeginNoCleanup(t, db)
		var err error
		if rs, err = tx.Query(dbtest.Ctx(t), "SELECT 1"); err != nil || !rs.Next() {
			t.Fatal(err)
		}
	})
	ctx := dbtest.Ctx(t)
	if _, err := db.Exec(ctx, "SELECT 1"); !errors.Is(err, ErrClosed) {
		t.Errorf("DB.Exec: %v", err)
	}
	if _, err := db.Begin(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("DB.Begin: %v", err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); !errors.Is(err, ErrClosed) {
		t.Errorf("Tx.Exec: %v", err)
	}
	if err := tx.Rollback(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Tx.Rollback: %v", err)
	}
	if err := rs.Scan(new(int)); !errors.Is(err, ErrClosed) {
		t.Errorf("Rows.Scan: %v (the connection's type map is no longer the test's)", err)
	}
}

// pgx's idiom closes the pool with a defer, which runs before the test's
// cleanups and so before Isolate's. pool.Close waits for every connection
// acquired from the pool: it must not wait for the test's, which only
// Isolate's cleanup ends. The test's writes are still rolled back and its
// session ends. (FakeTB runs the cleanups after pool.Close, as the test
// binary would.)
func TestIsolatedPoolClosedBeforeTheTestEnds(t *testing.T) {
	check := newPool(t, 1)
	table := newTable(t, check, "pgxtest_closed")
	pool, err := pgxpool.New(dbtest.Ctx(t), dbtest.Postgres(t).DSN)
	if err != nil {
		t.Fatal(err)
	}
	ft := &dbtest.FakeTB{TB: t}
	var ended sync.Once
	end := func() (errs []string) {
		ended.Do(func() { errs = ft.End() })
		return errs
	}
	t.Cleanup(func() { end() }) // if pool.Close hangs: lets it return
	db := Isolate(ft, pool)
	if err := insert(dbtest.Ctx(t), db, table, 1); err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := db.QueryRow(dbtest.Ctx(t), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		pool.Close() // the test function's defer pool.Close()
	}()
	testkit.WaitFor(t, closed, "pool.Close before the isolated test's end")
	if errs := end(); len(errs) != 0 {
		t.Errorf("the test's end reported %q", errs)
	}
	if got := ids(t, check, table); len(got) != 0 {
		t.Errorf("after the test: ids %v, want none", got)
	}
	testkit.Eventually(t, "the test's session to end on the server", func() bool {
		var n int
		if err := check.QueryRow(dbtest.Ctx(t), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
}
