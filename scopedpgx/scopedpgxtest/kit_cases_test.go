package scopedpgxtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
)

// Kit cases: what a service's test does with Isolate, compared with the
// real pool (same rows, same errors, same hooks, same number of runs).

type kitOutcome struct {
	IDs   []int
	Err   string
	Runs  int
	Hooks []string
}

func kitErrKind(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, scoped.ErrPartiallyCommitted):
		return "ErrPartiallyCommitted"
	case errors.Is(err, scoped.ErrNotCommitted):
		return "ErrNotCommitted"
	case scopedpgx.Retryable(err):
		return "retryable"
	}
	return "error"
}

type kitEnv struct {
	db    execer // the pool or the DB, for statements outside a unit
	txs   *scoped.ScopedSession[pgx.Tx]
	table string
	runs  int
	mu    sync.Mutex
	hooks []string
}

func (e *kitEnv) insert(ctx context.Context, id int) error {
	tx, err := e.txs.Current(ctx)
	if err != nil {
		return err
	}
	return insert(ctx, tx, e.table, id)
}

func (e *kitEnv) hook(ctx context.Context, name string) {
	add := func(s string) func(context.Context) {
		return func(context.Context) { e.mu.Lock(); e.hooks = append(e.hooks, s); e.mu.Unlock() }
	}
	_ = scoped.OnCommit(ctx, add(name+":commit"))
	_ = scoped.OnRollback(ctx, add(name+":rollback"))
}

func (e *kitEnv) serializationFailure(ctx context.Context) error {
	tx, err := e.txs.Current(ctx)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$")
	return err
}

// newFailureTable is newTable with a deferred constraint trigger that
// fails the COMMIT of a transaction that inserted a negative id with
// 40001 (dbtest.CreateCommitFailureTable for pgx).
func newFailureTable(t testing.TB, pool *pgxpool.Pool, prefix string) string {
	t.Helper()
	table := newTable(t, pool, prefix)
	fn := pgx.Identifier{table[1:len(table)-1] + "_check"}.Sanitize()
	ddl := fmt.Sprintf(`
CREATE FUNCTION %[2]s() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id < 0 THEN
		RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = 'serialization_failure';
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER check_neg AFTER INSERT ON %[1]s
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %[2]s();`, table, fn)
	if _, err := pool.Exec(dbtest.Ctx(t), ddl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP FUNCTION "+fn+"() CASCADE") })
	return table
}

var retry3 = scoped.WithRetry(3, scopedpgx.Retryable)

var kitCases = []struct {
	name     string
	failures bool
	run      func(ctx context.Context, e *kitEnv) error
}{
	{name: "retry after a serialization failure", run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, fmt.Sprint("run", e.runs))
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			if e.runs == 1 {
				return e.serializationFailure(ctx)
			}
			return nil
		}, retry3)
	}},
	{name: "nested run three deep asks its root to retry", run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			_ = scoped.Run(ctx, func(ctx context.Context) error {
				if err := e.insert(ctx, 2); err != nil {
					return err
				}
				return scoped.Run(ctx, func(ctx context.Context) error {
					e.hook(ctx, fmt.Sprint("deep", e.runs))
					if err := e.insert(ctx, 3); err != nil {
						return err
					}
					if e.runs == 1 {
						return e.serializationFailure(ctx)
					}
					return nil
				}, retry3)
			})
			return nil
		}, retry3)
	}},
	{name: "hand commit then retryable failure is not retried", run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, "unit")
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			if err := e.txs.Commit(ctx); err != nil {
				return err
			}
			if err := e.insert(ctx, 2); err != nil {
				return err
			}
			return e.serializationFailure(ctx)
		}, retry3)
	}},
	{name: "hand commit then a failed statement fails the commit", run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, "unit")
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			if err := e.txs.Commit(ctx); err != nil {
				return err
			}
			if err := e.insert(ctx, 2); err != nil {
				return err
			}
			_ = e.insert(ctx, 2) // duplicate key, swallowed: the COMMIT rolls back
			return nil
		}, retry3)
	}},
	{name: "hand commit then a commit failing with 40001", failures: true, run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, "unit")
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			if err := e.txs.Commit(ctx); err != nil {
				return err
			}
			return e.insert(ctx, -1)
		}, retry3)
	}},
	{name: "commit failing with 40001 is retried", failures: true, run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, fmt.Sprint("run", e.runs))
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			if e.runs == 1 {
				return e.insert(ctx, -1)
			}
			return nil
		}, retry3)
	}},
	{name: "statement outside a transaction failing its implicit commit", failures: true, run: func(ctx context.Context, e *kitEnv) error {
		e.runs++
		return insert(ctx, e.db, e.table, -1)
	}},
	{name: "remove after hand commits, nothing lost", run: func(ctx context.Context, e *kitEnv) error {
		ctx, scope := scoped.Begin(ctx)
		e.runs++
		e.hook(ctx, "unit")
		for id := 1; id <= 2; id++ {
			if err := e.insert(ctx, id); err != nil {
				_ = scope.Remove()
				return err
			}
			if err := e.txs.Commit(ctx); err != nil {
				_ = scope.Remove()
				return err
			}
		}
		return scope.Remove()
	}},
	{name: "remove after a hand commit loses open work", run: func(ctx context.Context, e *kitEnv) error {
		ctx, scope := scoped.Begin(ctx)
		e.runs++
		e.hook(ctx, "unit")
		if err := e.insert(ctx, 1); err != nil {
			_ = scope.Remove()
			return err
		}
		if err := e.txs.Commit(ctx); err != nil {
			_ = scope.Remove()
			return err
		}
		if err := e.insert(ctx, 2); err != nil {
			_ = scope.Remove()
			return err
		}
		return scope.Remove()
	}},
	{name: "hand commit inside a child is a release", run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, "root")
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			_ = scoped.Run(ctx, func(ctx context.Context) error {
				e.hook(ctx, "child")
				if err := e.insert(ctx, 2); err != nil {
					return err
				}
				if err := e.txs.Commit(ctx); err != nil {
					return err
				}
				return e.serializationFailure(ctx)
			})
			return nil
		}, retry3)
	}},
}

type poolExecer interface {
	execer
	querier
}

func TestKitCasesAsTheRealPool(t *testing.T) {
	pool := newPool(t, 4)
	for _, c := range kitCases {
		t.Run(c.name, func(t *testing.T) {
			mk := func(prefix string) string {
				if c.failures {
					return newFailureTable(t, pool, prefix)
				}
				return newTable(t, pool, prefix)
			}
			run := func(t *testing.T, db poolExecer, txs *scoped.ScopedSession[pgx.Tx], table string) kitOutcome {
				e := &kitEnv{db: db, txs: txs, table: table}
				err := c.run(dbtest.Ctx(t), e)
				hooks := slices.Clone(e.hooks)
				slices.Sort(hooks)
				return kitOutcome{IDs: ids(t, db, table), Err: kitErrKind(err), Runs: e.runs, Hooks: hooks}
			}
			realTable, isoTable := mk("pgxkit_real"), mk("pgxkit_iso")
			want := run(t, pool, scopedpgx.NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil)), realTable)
			var got kitOutcome
			t.Run("isolated", func(t *testing.T) {
				db := Isolate(t, pool)
				got = run(t, db, db.NewTx(scoped.WithTeardownErrorHook(nil)), isoTable)
			})
			t.Logf("real pool %+v", want)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("Isolate %+v, real pool %+v", got, want)
			}
			if left := ids(t, pool, isoTable); len(left) != 0 {
				t.Errorf("Isolate left %v behind", left)
			}
		})
	}
}

// A test that fails mid-unit (t.FailNow: runtime.Goexit inside scoped.Run)
// rolls the unit back, runs its OnRollback hooks, leaves the DB usable,
// and its end leaves no row and no connection acquired.
func TestFailNowInsideAUnit(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgxkit_failnow")
	ft := &fakeT{TB: t}
	db := Isolate(ft, pool)
	e := &kitEnv{db: db, txs: db.NewTx(scoped.WithTeardownErrorHook(nil)), table: table}
	ctx := dbtest.Ctx(t)
	if err := scoped.Run(ctx, func(ctx context.Context) error { return e.insert(ctx, 1) }); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = scoped.Run(ctx, func(ctx context.Context) error {
			e.hook(ctx, "unit")
			_ = e.insert(ctx, 2)
			_ = scoped.Run(ctx, func(ctx context.Context) error {
				_ = e.insert(ctx, 3)
				runtime.Goexit() // t.FailNow
				return nil
			})
			return nil
		})
	}()
	<-done
	if got := ids(t, db, table); !slices.Equal(got, []int{1}) {
		t.Errorf("after the failed unit the test sees %v, want [1]", got)
	}
	// The next unit of the same test is not blocked by the one that exited.
	if err := scoped.Run(ctx, func(ctx context.Context) error { return e.insert(ctx, 4) }); err != nil {
		t.Errorf("a unit after the failed one: %v", err)
	}
	if !slices.Equal(e.hooks, []string{"unit:rollback"}) {
		t.Errorf("hooks %v, want [unit:rollback]", e.hooks)
	}
	if errs := ft.end(); len(errs) != 0 {
		t.Errorf("the isolated database's end: %q", errs)
	}
	if got := ids(t, pool, table); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired after the test's end", n)
	}
}
