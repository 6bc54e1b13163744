package scopedtest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
	"github.com/go-scoped/scoped/scopedtest"
)

// Kit cases: what a service's test does with IsolatedDB, compared with the
// real pool (same rows, same errors, same hooks, same number of runs).

type kitOutcome struct {
	IDs   []int64
	Err   string // kind of the root's error
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
	case scopedsql.Retryable(err):
		return "retryable"
	}
	return "error"
}

// kitEnv is one database a kit case runs on.
type kitEnv struct {
	s     dbtest.Server
	db    *sql.DB
	txs   *scoped.ScopedSession[*sql.Tx]
	table string
	runs  int
	mu    sync.Mutex
	hooks []string
}

func (e *kitEnv) insert(ctx context.Context, id int64) error {
	tx, err := e.txs.Current(ctx)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, e.s.InsertID(e.table), id)
	return err
}

// hook records OnCommit and OnRollback of ctx's unit under name.
func (e *kitEnv) hook(ctx context.Context, name string) {
	add := func(s string) func(context.Context) {
		return func(context.Context) { e.mu.Lock(); e.hooks = append(e.hooks, s); e.mu.Unlock() }
	}
	_ = scoped.OnCommit(ctx, add(name+":commit"))
	_ = scoped.OnRollback(ctx, add(name+":rollback"))
}

// serializationFailure fails with a retryable error on the unit's
// transaction, as a conflicting transaction would make it fail.
func (e *kitEnv) serializationFailure(ctx context.Context) error {
	tx, err := e.txs.Current(ctx)
	if err != nil {
		return err
	}
	q := "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$"
	if e.s.Name == "mysql" {
		q = "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'conflict'"
	}
	_, err = tx.ExecContext(ctx, q)
	return err
}

type kitCase struct {
	name     string
	pgOnly   bool
	failures bool // table: dbtest.CreateCommitFailureTable (id < 0 fails COMMIT with 40001)
	run      func(ctx context.Context, e *kitEnv) error
}

var retry3 = scoped.WithRetry(3, scopedsql.Retryable)

var kitCases = []kitCase{
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
			return nil // swallowed: the root retries all the same
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
	{name: "hand commit then a commit failing with 40001", pgOnly: true, failures: true, run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, "unit")
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			if err := e.txs.Commit(ctx); err != nil {
				return err
			}
			return e.insert(ctx, -1) // its COMMIT fails
		}, retry3)
	}},
	{name: "commit failing with 40001 is retried", pgOnly: true, failures: true, run: func(ctx context.Context, e *kitEnv) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			e.runs++
			e.hook(ctx, fmt.Sprint("run", e.runs))
			if err := e.insert(ctx, 1); err != nil {
				return err
			}
			if e.runs == 1 {
				return e.insert(ctx, -1) // its COMMIT fails
			}
			return nil
		}, retry3)
	}},
	{name: "statement outside a transaction failing its implicit commit", pgOnly: true, failures: true, run: func(ctx context.Context, e *kitEnv) error {
		e.runs++
		_, err := e.db.ExecContext(ctx, e.s.InsertID(e.table), -1)
		return err
	}},
	{name: "remove after hand commits, nothing lost", run: func(ctx context.Context, e *kitEnv) error {
		ctx, scope := scoped.Begin(ctx)
		e.runs++
		e.hook(ctx, "unit")
		for id := int64(1); id <= 2; id++ {
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
		return scope.Remove() // 2 is rolled back
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

func TestKitCasesAsTheRealPool(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		plain := plainDB(t, s)
		for _, c := range kitCases {
			t.Run(c.name, func(t *testing.T) {
				if c.pgOnly && s.Name != "postgres" {
					t.Skip("PostgreSQL only")
				}
				newTable := func(prefix string) string {
					if c.failures {
						return dbtest.CreateCommitFailureTable(t, plain, prefix)
					}
					return dbtest.CreateIDTable(t, plain, prefix)
				}
				run := func(t *testing.T, db *sql.DB, table string) kitOutcome {
					e := &kitEnv{s: s, db: db, table: table,
						txs: scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))}
					err := c.run(dbtest.Ctx(t), e)
					hooks := slices.Clone(e.hooks)
					slices.Sort(hooks)
					return kitOutcome{IDs: dbtest.IDs(t, db, table), Err: kitErrKind(err), Runs: e.runs, Hooks: hooks}
				}
				realTable, isoTable := newTable("kit_real"), newTable("kit_iso")
				want := run(t, plain, realTable)
				var got kitOutcome
				t.Run("isolated", func(t *testing.T) {
					got = run(t, scopedtest.IsolatedDB(t, s.Driver, s.DSN), isoTable)
				})
				t.Logf("real pool %+v", want)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("IsolatedDB %+v, real pool %+v", got, want)
				}
				if left := dbtest.IDs(t, plain, isoTable); len(left) != 0 {
					t.Errorf("IsolatedDB left %v behind", left)
				}
			})
		}
	})
}

// goexitTB is the test an IsolatedDB belongs to, whose end the test says
// when: its cleanups run on end, its errors are recorded.
type goexitTB struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (f *goexitTB) Helper()           {}
func (f *goexitTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *goexitTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}
func (f *goexitTB) end() []string {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	return f.errs
}

// A test that fails mid-unit (t.FailNow: runtime.Goexit inside scoped.Run)
// rolls the unit back as in production, runs its OnRollback hooks, leaves
// the isolated database usable for its cleanups, and its end leaves
// nothing behind: no row, no open connection, no scope (CheckScopesM).
func TestFailNowInsideAUnit(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		plain := plainDB(t, s)
		table := dbtest.CreateIDTable(t, plain, "kit_failnow")
		ft := &goexitTB{TB: t}
		db := scopedtest.IsolatedDB(ft, s.Driver, s.DSN)
		e := &kitEnv{s: s, db: db, table: table,
			txs: scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))}
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
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1}) {
			t.Errorf("after the failed unit the test sees %v, want [1]", got)
		}
		if !slices.Equal(e.hooks, []string{"unit:rollback"}) {
			t.Errorf("hooks %v, want [unit:rollback]", e.hooks)
		}
		if errs := ft.end(); len(errs) != 0 {
			t.Errorf("the isolated database's end: %q", errs)
		}
		if got := dbtest.IDs(t, plain, table); len(got) != 0 {
			t.Errorf("left behind: %v", got)
		}
		if n := db.Stats().OpenConnections; n != 0 {
			t.Errorf("%d connections open after the test's end", n)
		}
	})
}

// Parallel tests, each with its own IsolatedDB on one table, distinct keys:
// each sees its own rows and hooks only, and none is left behind.
func TestParallelIsolatedTests(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		table := dbtest.CreateIDTable(t, plainDB(t, s), "kit_parallel")
		t.Run("group", func(t *testing.T) {
			for i := range int64(4) {
				t.Run(fmt.Sprint(i), func(t *testing.T) {
					t.Parallel()
					db := scopedtest.IsolatedDB(t, s.Driver, s.DSN)
					e := &kitEnv{s: s, db: db, table: table,
						txs: scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))}
					ctx := dbtest.Ctx(t)
					for j := range int64(3) {
						_ = scoped.Run(ctx, func(ctx context.Context) error {
							e.hook(ctx, fmt.Sprint(j))
							if err := e.insert(ctx, i*10+j); err != nil {
								return err
							}
							return scoped.Run(ctx, func(ctx context.Context) error {
								if err := e.insert(ctx, 100+i*10+j); err != nil {
									return err
								}
								if j == 1 {
									return errors.New("child fails")
								}
								return nil
							})
						})
					}
					want := []int64{i * 10, i*10 + 2, 100 + i*10, 100 + i*10 + 2}
					if got := dbtest.IDs(t, db, table); !slices.Equal(got, want) {
						t.Errorf("sees %v, want %v", got, want)
					}
					if want := []string{"0:commit", "1:rollback", "2:commit"}; !slices.Equal(e.hooks, want) {
						t.Errorf("hooks %v, want %v", e.hooks, want)
					}
				})
			}
		})
		if got := dbtest.IDs(t, plainDB(t, s), table); len(got) != 0 {
			t.Errorf("left behind: %v", got)
		}
	})
}
