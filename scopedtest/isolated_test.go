package scopedtest_test

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
	"github.com/go-scoped/scoped/scopedtest"
)

func TestCommittedDataIsVisibleInsideTheTestAndGoneAfter(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		plain := plainDB(t, s)
		table := dbtest.CreateIDTable(t, plain, "scopedtest_visible")

		t.Run("inside", func(t *testing.T) {
			db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
			txs := scoped.New(scopedsql.Tx(db, nil))
			for _, id := range []int64{1, 2} {
				ctx, scope := scoped.Begin(dbtest.Ctx(t))
				tx, err := txs.Current(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.ExecContext(ctx, s.InsertID(table), id); err != nil {
					t.Fatal(err)
				}
				if err := scope.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1, 2}) {
				t.Errorf("inside the test: ids = %v, want [1 2]", got)
			}
			if got := dbtest.IDs(t, plain, table); len(got) != 0 {
				t.Errorf("another connection sees %v during the test, want nothing", got)
			}
		})

		if got := dbtest.IDs(t, plain, table); len(got) != 0 {
			t.Errorf("after the test: ids = %v, want none", got)
		}
	})
}

func TestParallelTestsDoNotSeeEachOthersRows(t *testing.T) {
	if p, _ := strconv.Atoi(flag.Lookup("test.parallel").Value.String()); p < 2 {
		t.Skip("needs -parallel 2 or more to run two tests at once")
	}
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		plain := plainDB(t, s)
		table := dbtest.CreateIDTable(t, plain, "scopedtest_parallel")
		// Each test inserts, then waits for the other to have inserted
		// too, so that both outer transactions are open with a row each
		// when they look.
		var inserted sync.WaitGroup
		inserted.Add(2)
		for _, id := range []int64{1, 2} {
			t.Run(fmt.Sprint(id), func(t *testing.T) {
				t.Parallel()
				db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
				if _, err := db.ExecContext(dbtest.Ctx(t), s.InsertID(table), id); err != nil {
					inserted.Done()
					t.Fatal(err)
				}
				inserted.Done()
				inserted.Wait()
				if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{id}) {
					t.Errorf("ids = %v, want only [%d]", got, id)
				}
			})
		}
		t.Cleanup(func() {
			if got := dbtest.IDs(t, plain, table); len(got) != 0 {
				t.Errorf("after both tests: ids = %v, want none", got)
			}
		})
	})
}

// A child scope's transaction is a savepoint inside its parent's: its
// rollback undoes its own work only.
func TestNestedBeginRollsBackOnlyItsSavepoint(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		table := dbtest.CreateIDTable(t, plainDB(t, s), "scopedtest_nested")
		db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
		txs := scoped.New(scopedsql.Tx(db, nil))
		exec := func(ctx context.Context, id int64) {
			t.Helper()
			tx, err := txs.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, s.InsertID(table), id); err != nil {
				t.Fatal(err)
			}
		}

		ctx, scope := scoped.Begin(dbtest.Ctx(t))
		exec(ctx, 1)
		child, childScope := scoped.Begin(ctx)
		exec(child, 2)
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1, 2}) {
			t.Errorf("before the child ends: ids = %v, want [1 2]", got)
		}
		if err := childScope.Remove(); err != nil {
			t.Fatal(err)
		}
		exec(ctx, 3)
		if err := scope.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1, 3}) {
			t.Errorf("ids = %v, want [1 3]: only the child's row rolled back", got)
		}
	})
}

// The other side of nesting, documented as a difference from a real pool:
// a child scope's commit is part of its parent's transaction, so the
// parent's rollback undoes it.
func TestNestedCommitIsUndoneByTheEnclosingRollback(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		table := dbtest.CreateIDTable(t, plainDB(t, s), "scopedtest_nestedcommit")
		db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
		txs := scoped.New(scopedsql.Tx(db, nil))

		ctx, scope := scoped.Begin(dbtest.Ctx(t))
		if _, err := txs.Current(ctx); err != nil { // the parent's transaction is open
			t.Fatal(err)
		}
		child, childScope := scoped.Begin(ctx)
		tx, err := txs.Current(child)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(child, s.InsertID(table), 1); err != nil {
			t.Fatal(err)
		}
		if err := childScope.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1}) {
			t.Errorf("after the child's commit: ids = %v, want [1]", got)
		}
		if err := scope.Remove(); err != nil {
			t.Fatal(err)
		}
		if got := dbtest.IDs(t, db, table); len(got) != 0 {
			t.Errorf("after the parent's rollback: ids = %v, want none", got)
		}
	})
}

func TestEveryConnectionIsTheSameBackend(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
		var want int64
		if err := db.QueryRowContext(dbtest.Ctx(t), s.BackendIDQuery()).Scan(&want); err != nil {
			t.Fatal(err)
		}
		// Hold a transaction and a pinned connection open, so that
		// database/sql must hand out further connections.
		tx, err := db.BeginTx(dbtest.Ctx(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		conn, err := db.Conn(dbtest.Ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for name, q := range map[string]interface {
			QueryRowContext(context.Context, string, ...any) *sql.Row
		}{"tx": tx, "conn": conn, "db": db} {
			var got int64
			if err := q.QueryRowContext(dbtest.Ctx(t), s.BackendIDQuery()).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s: backend %d, want %d", name, got, want)
			}
		}
	})
}

// Many goroutines of one test, each with its own scope, committing: all
// of their rows are there, and gone after the test.
func TestConcurrentScopesOfOneTestAllWork(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		plain := plainDB(t, s)
		table := dbtest.CreateIDTable(t, plain, "scopedtest_concurrent")
		t.Run("test", func(t *testing.T) {
			db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
			txs := scoped.New(scopedsql.Tx(db, nil))
			const n = 32
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for id := range int64(n) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, scope := scoped.Begin(dbtest.Ctx(t))
					defer scope.Remove()
					tx, err := txs.Current(ctx)
					if err == nil {
						_, err = tx.ExecContext(ctx, s.InsertID(table), id)
					}
					if err == nil {
						err = scope.Commit()
					}
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if got := dbtest.IDs(t, db, table); len(got) != n {
				t.Errorf("%d rows, want %d", len(got), n)
			}
			wantStats(t, txs.Stats(), scoped.Stats{Created: n, Committed: n})
		})
		if got := dbtest.IDs(t, plain, table); len(got) != 0 {
			t.Errorf("after the test: %d rows, want none", len(got))
		}
	})
}

// Results are read before the query returns, so a loop that runs a
// statement per row does not wait for itself.
func TestStatementInsideRowsLoopDoesNotDeadlock(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		table := dbtest.CreateIDTable(t, plainDB(t, s), "scopedtest_loop")
		db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
		ctx := dbtest.Ctx(t)
		for _, id := range []int64{1, 2, 3} {
			if _, err := db.ExecContext(ctx, s.InsertID(table), id); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := db.QueryContext(ctx, "SELECT id FROM "+table+" ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, s.InsertID(table), id+10); err != nil {
				t.Fatal(err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1, 2, 3, 11, 12, 13}) {
			t.Errorf("ids = %v", got)
		}
	})
}

// A failing statement fails alone, outside a transaction as in autocommit
// mode, and inside one until that transaction rolls back, even on
// PostgreSQL, where it would otherwise abort the outer transaction.
func TestFailedStatementDoesNotBreakTheDatabase(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		table := dbtest.CreateIDTable(t, plainDB(t, s), "scopedtest_fail")
		db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
		ctx := dbtest.Ctx(t)
		ins := s.InsertID(table)
		if _, err := db.ExecContext(ctx, ins, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, ins, 1); err == nil {
			t.Fatal("duplicate key accepted")
		}
		if _, err := db.ExecContext(ctx, ins, 2); err != nil {
			t.Fatalf("after a failed statement: %v", err)
		}

		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, ins, 3); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, ins, 1); err == nil {
			t.Fatal("duplicate key accepted in a transaction")
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, ins, 4); err != nil {
			t.Fatalf("after a rolled back transaction with a failed statement: %v", err)
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1, 2, 4}) {
			t.Errorf("ids = %v, want [1 2 4]", got)
		}
	})
}

// A cancelled scope is rolled back by its safety net, and a cancelled
// context fails a statement before it starts, without breaking the
// connection the rest of the test runs on.
func TestCancellationEndsTheScopeButNotTheDatabase(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		table := dbtest.CreateIDTable(t, plainDB(t, s), "scopedtest_cancel")
		db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
		txs := scoped.New(scopedsql.Tx(db, nil))

		parent, cancel := context.WithCancel(dbtest.Ctx(t))
		ctx, scope := scoped.Begin(parent)
		tx, err := txs.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, s.InsertID(table), 1); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := scope.Remove(); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(parent, s.InsertID(table), 2); !errors.Is(err, context.Canceled) {
			t.Errorf("Exec with a cancelled context = %v, want context.Canceled", err)
		}
		if _, err := db.ExecContext(dbtest.Ctx(t), s.InsertID(table), 3); err != nil {
			t.Fatalf("after cancellations: %v", err)
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{3}) {
			t.Errorf("ids = %v, want [3]", got)
		}
	})
}

// On PostgreSQL DDL is transactional: a table created inside the test is
// gone after it.
func TestDDLIsRolledBackOnPostgres(t *testing.T) {
	t.Parallel()
	s := dbtest.Postgres(t)
	table := dbtest.Table("scopedtest_ddl")
	t.Run("test", func(t *testing.T) {
		db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
		if _, err := db.ExecContext(dbtest.Ctx(t), "CREATE TABLE "+table+" (id BIGINT)"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(dbtest.Ctx(t), s.InsertID(table), 1); err != nil {
			t.Fatal(err)
		}
	})
	var found bool
	err := plainDB(t, s).QueryRowContext(dbtest.Ctx(t),
		"SELECT to_regclass($1) IS NOT NULL", table).Scan(&found)
	if err != nil {
		t.Fatal(err)
	}
	if found {
		t.Errorf("table %s still exists after the test", table)
	}
}

func TestUnreachableServerFailsIsolatedDB(t *testing.T) {
	t.Parallel()
	rec := newCleanupRecorder(t)
	func() {
		defer func() { _ = recover() }() // the end of the recorded Fatalf
		scopedtest.IsolatedDB(rec, "postgres", "postgres://postgres@127.0.0.1:1/test?sslmode=disable")
	}()
	if len(rec.fatals) != 1 || !strings.Contains(rec.fatals[0], "connection refused") {
		t.Fatalf("IsolatedDB failed the test with %q, want one message saying the connection was refused", rec.fatals)
	}
	if rec.registered != 0 {
		t.Errorf("%d cleanups registered by a failed IsolatedDB", rec.registered)
	}
}

func wantStats(t testing.TB, got, want scoped.Stats) {
	t.Helper()
	if got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}
