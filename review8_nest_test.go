package scoped_test

// Review 8: nested units of work (spec §6, §12, §14) on the real servers,
// through scopedsql.NewTx: what a child's failure leaves to its parent,
// what the parent commits and returns, which hooks run, and that no
// connection stays in use.

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// r8nOpen opens s's pool, closed when t ends (after the tables' drops).
func r8nOpen(t *testing.T, s dbtest.Server, max int) *sql.DB {
	t.Helper()
	db, err := sql.Open(s.Driver, s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(max)
	return db
}

// r8nIdle fails t if a connection of db is still in use.
func r8nIdle(t *testing.T, db *sql.DB) {
	t.Helper()
	if n := db.Stats().InUse; n != 0 {
		t.Errorf("%d connections still in use after the unit ended", n)
	}
}

// r8nHooks records the hooks that ran, by name.
type r8nHooks struct {
	mu  sync.Mutex
	ran []string
}

func (h *r8nHooks) add(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	note := func(what string) func(context.Context) {
		return func(context.Context) {
			h.mu.Lock()
			h.ran = append(h.ran, what)
			h.mu.Unlock()
		}
	}
	if err := scoped.OnCommit(ctx, note("commit "+name)); err != nil {
		t.Errorf("OnCommit %s: %v", name, err)
	}
	if err := scoped.OnRollback(ctx, note("rollback "+name)); err != nil {
		t.Errorf("OnRollback %s: %v", name, err)
	}
}

func (h *r8nHooks) list() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ran)
}

// r8nInsert inserts id into table through the transaction of ctx's unit.
func r8nInsert(ctx context.Context, txs *scoped.ScopedSession[*sql.Tx], s dbtest.Server, table string, id int64) error {
	tx, err := txs.Current(ctx)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, s.InsertID(table), id)
	return err
}

// A child unit whose context ended before it asked for its transaction
// (a service function run under a deadline of its own that has passed)
// fails with the context's error: nothing ran on the parent's
// transaction, no SAVEPOINT was sent. Its caller handles that error and
// commits its own work, which must be saved: the transaction is intact.
func TestReview8NestChildWithEndedContextLeavesItsParentUsable(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := r8nOpen(t, s, 2)
		table := dbtest.CreateIDTable(t, db, "r8_ctxchild")
		txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
		var childErr error
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			if err := r8nInsert(ctx, txs, s, table, 1); err != nil {
				return err
			}
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			childErr = scoped.Run(cctx, func(ctx context.Context) error {
				return r8nInsert(ctx, txs, s, table, 2)
			})
			return r8nInsert(ctx, txs, s, table, 3)
		})
		t.Logf("root: %v; child: %v", err, childErr)
		if childErr == nil {
			t.Errorf("child with an ended context = nil")
		}
		if err != nil {
			t.Errorf("root = %v, want nil: the child's end changed nothing in the transaction", err)
		}
		if got, want := dbtest.IDs(t, db, table), []int64{1, 3}; !slices.Equal(got, want) {
			t.Errorf("rows %v, want %v", got, want)
		}
		r8nIdle(t, db)
	})
}

// PostgreSQL: the middle of three levels runs a statement that fails
// (duplicate key: the transaction is aborted until ROLLBACK TO), handles
// that error and runs a grandchild, whose SAVEPOINT the aborted
// transaction refuses (25P02); the middle then returns the grandchild's
// error and is rolled back to its savepoint, which ends the abort. The
// root handles the middle's error and commits its own work: a child that
// fails is undone alone (docs/units.md), and nothing here failed that a
// ROLLBACK TO did not undo.
func TestReview8NestMiddleLevelStatementFailureThenGrandchild(t *testing.T) {
	s := dbtest.Postgres(t)
	db := r8nOpen(t, s, 2)
	table := dbtest.CreateIDTable(t, db, "r8_middle")
	txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
	var hooks r8nHooks
	var middleErr, gcErr error
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		hooks.add(t, ctx, "root")
		if err := r8nInsert(ctx, txs, s, table, 1); err != nil {
			return err
		}
		middleErr = scoped.Run(ctx, func(ctx context.Context) error {
			hooks.add(t, ctx, "middle")
			if err := r8nInsert(ctx, txs, s, table, 2); err != nil {
				return err
			}
			_ = r8nInsert(ctx, txs, s, table, 1) // duplicate key: aborts the transaction
			gcErr = scoped.Run(ctx, func(ctx context.Context) error {
				hooks.add(t, ctx, "grandchild")
				return r8nInsert(ctx, txs, s, table, 3)
			})
			return gcErr
		})
		return r8nInsert(ctx, txs, s, table, 4)
	})
	t.Logf("root: %v\nmiddle: %v\ngrandchild: %v", err, middleErr, gcErr)
	if middleErr == nil || gcErr == nil {
		t.Errorf("middle %v, grandchild %v: want both to fail", middleErr, gcErr)
	}
	if err != nil {
		t.Errorf("root = %v, want nil", err)
	}
	if got, want := dbtest.IDs(t, db, table), []int64{1, 4}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	if got, want := hooks.list(), []string{"rollback grandchild", "rollback middle", "commit root"}; !slices.Equal(got, want) {
		t.Errorf("hooks %q, want %q", got, want)
	}
	r8nIdle(t, db)
}

// r8nState returns the SQLSTATE of the lib/pq or MariaDB error in err, ""
// for none.
func r8nState(err error) string {
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		return st.SQLState()
	}
	return ""
}

// PostgreSQL: a child's statement fails for real (duplicate key), which
// aborts the transaction until ROLLBACK TO. The child returns that error
// unchanged; its parent goes on, commits what it did before and after,
// and nothing of the child is saved. The child's OnCommit hook is
// dropped, its OnRollback hook runs, the root's OnCommit hook runs.
func TestReview8NestChildStatementFailsParentCommits(t *testing.T) {
	s := dbtest.Postgres(t)
	db := r8nOpen(t, s, 2)
	table := dbtest.CreateIDTable(t, db, "r8_childsql")
	txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
	var hooks r8nHooks
	var childErr error
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		hooks.add(t, ctx, "root")
		if err := r8nInsert(ctx, txs, s, table, 1); err != nil {
			return err
		}
		childErr = scoped.Run(ctx, func(ctx context.Context) error {
			hooks.add(t, ctx, "child")
			if err := r8nInsert(ctx, txs, s, table, 2); err != nil {
				return err
			}
			return r8nInsert(ctx, txs, s, table, 1) // duplicate key
		})
		return r8nInsert(ctx, txs, s, table, 3)
	})
	if err != nil {
		t.Errorf("root = %v, want nil", err)
	}
	if got := r8nState(childErr); got != "23505" {
		t.Errorf("child = %v (SQLSTATE %q), want the duplicate key error 23505", childErr, got)
	}
	if got, want := dbtest.IDs(t, db, table), []int64{1, 3}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	if got, want := hooks.list(), []string{"rollback child", "commit root"}; !slices.Equal(got, want) {
		t.Errorf("hooks %q, want %q", got, want)
	}
	r8nIdle(t, db)
}

// PostgreSQL: a child swallows its failed statement's error and returns
// nil. Its RELEASE is refused (25P02), so it is rolled back to its
// savepoint and its Run fails; its OnCommit hook, registered before the
// failure, must not run when the root then commits, its OnRollback hook
// runs once.
func TestReview8NestChildWhoseReleaseFailedRunsNoOnCommit(t *testing.T) {
	s := dbtest.Postgres(t)
	db := r8nOpen(t, s, 2)
	table := dbtest.CreateIDTable(t, db, "r8_release")
	txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
	var hooks r8nHooks
	var childErr error
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		hooks.add(t, ctx, "root")
		if err := r8nInsert(ctx, txs, s, table, 1); err != nil {
			return err
		}
		childErr = scoped.Run(ctx, func(ctx context.Context) error {
			hooks.add(t, ctx, "child")
			if err := r8nInsert(ctx, txs, s, table, 2); err != nil {
				return err
			}
			_ = r8nInsert(ctx, txs, s, table, 1) // duplicate key, swallowed
			return nil
		})
		return r8nInsert(ctx, txs, s, table, 3)
	})
	if err != nil {
		t.Errorf("root = %v, want nil", err)
	}
	if childErr == nil {
		t.Errorf("child = %v, want the refused release", childErr)
	}
	if got, want := dbtest.IDs(t, db, table), []int64{1, 3}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	if got, want := hooks.list(), []string{"rollback child", "commit root"}; !slices.Equal(got, want) {
		t.Errorf("hooks %q, want %q", got, want)
	}
	r8nIdle(t, db)
}

// Two children on two goroutines at once on one parent transaction: the
// one that asks second gets ErrNestedBusy while the first holds its
// savepoint, and writes nothing; the first's savepoint is released; a
// third child afterwards nests normally; the root commits the first's and
// the third's rows only, and runs the OnCommit hooks of those two.
func TestReview8NestConcurrentChildrenOnOneTransaction(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := r8nOpen(t, s, 2)
		table := dbtest.CreateIDTable(t, db, "r8_busy")
		txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
		var hooks r8nHooks
		var errA, errB, errC error
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			if err := r8nInsert(ctx, txs, s, table, 1); err != nil {
				return err
			}
			holding, done := make(chan struct{}), make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				errA = scoped.Run(ctx, func(ctx context.Context) error {
					hooks.add(t, ctx, "a")
					err := r8nInsert(ctx, txs, s, table, 2)
					close(holding)
					<-done
					return err
				})
			}()
			go func() {
				defer wg.Done()
				defer close(done)
				<-holding
				errB = scoped.Run(ctx, func(ctx context.Context) error {
					hooks.add(t, ctx, "b")
					return r8nInsert(ctx, txs, s, table, 3)
				})
			}()
			wg.Wait()
			errC = scoped.Run(ctx, func(ctx context.Context) error {
				hooks.add(t, ctx, "c")
				return r8nInsert(ctx, txs, s, table, 4)
			})
			return errC
		})
		if err != nil || errA != nil || errC != nil {
			t.Errorf("root %v, a %v, c %v: want nil", err, errA, errC)
		}
		if !errors.Is(errB, scoped.ErrNestedBusy) {
			t.Errorf("b = %v, want ErrNestedBusy", errB)
		}
		if got, want := dbtest.IDs(t, db, table), []int64{1, 2, 4}; !slices.Equal(got, want) {
			t.Errorf("rows %v, want %v", got, want)
		}
		if got, want := hooks.list(), []string{"rollback b", "commit a", "commit c"}; !slices.Equal(got, want) {
			t.Errorf("hooks %q, want %q", got, want)
		}
		r8nIdle(t, db)
	})
}

// A child commits its part by hand (ScopedSession.Commit): that only
// releases its savepoint. A root that then fails saves nothing of it. A
// child that then writes more (a new savepoint) and fails keeps the part
// it released and undoes the rest, and the root that commits saves it.
func TestReview8NestHandCommitInChildOnlyReleases(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := r8nOpen(t, s, 2)
		txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
		errFail := errors.New("fail")
		for _, rootFails := range []bool{false, true} {
			table := dbtest.CreateIDTable(t, db, "r8_handchild")
			var childErr error
			err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
				if err := r8nInsert(ctx, txs, s, table, 1); err != nil {
					return err
				}
				childErr = scoped.Run(ctx, func(ctx context.Context) error {
					if err := r8nInsert(ctx, txs, s, table, 2); err != nil {
						return err
					}
					if err := txs.Commit(ctx); err != nil {
						return err
					}
					if err := r8nInsert(ctx, txs, s, table, 3); err != nil {
						return err
					}
					return errFail
				})
				if rootFails {
					return errFail
				}
				return nil
			})
			want := []int64{1, 2}
			if rootFails {
				want = nil
				if !errors.Is(err, errFail) || errors.Is(err, scoped.ErrPartiallyCommitted) {
					t.Errorf("failing root = %v, want its own error only", err)
				}
			} else if err != nil {
				t.Errorf("root = %v, want nil", err)
			}
			if !errors.Is(childErr, errFail) || errors.Is(childErr, scoped.ErrPartiallyCommitted) {
				t.Errorf("child = %v, want its own error only: its hand commit saved nothing", childErr)
			}
			if got := dbtest.IDs(t, db, table); !slices.Equal(got, want) {
				t.Errorf("root fails %v: rows %v, want %v", rootFails, got, want)
			}
			r8nIdle(t, db)
		}
	})
}

// A child with WithRetry commits its part by hand (a RELEASE, nothing
// saved), then fails with a retryable error: its root with WithRetry runs
// again, since nothing of the unit was saved, and the second run's rows
// are saved once.
func TestReview8NestChildHandCommitThenRetryableFailureRetriesTheRoot(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := r8nOpen(t, s, 2)
		table := dbtest.CreateIDTable(t, db, "r8_handretry")
		txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
		errConflict := errors.New("conflict")
		retryable := func(err error) bool { return errors.Is(err, errConflict) }
		runs := 0
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			runs++
			if err := r8nInsert(ctx, txs, s, table, 1); err != nil {
				return err
			}
			return scoped.Run(ctx, func(ctx context.Context) error {
				if err := r8nInsert(ctx, txs, s, table, 2); err != nil {
					return err
				}
				if err := txs.Commit(ctx); err != nil {
					return err
				}
				if runs == 1 {
					return errConflict
				}
				return nil
			}, scoped.WithRetry(2, retryable))
		}, scoped.WithRetry(3, retryable))
		if err != nil || runs != 2 {
			t.Errorf("root = %v after %d runs, want nil after 2", err, runs)
		}
		if got, want := dbtest.IDs(t, db, table), []int64{1, 2}; !slices.Equal(got, want) {
			t.Errorf("rows %v, want %v", got, want)
		}
		r8nIdle(t, db)
	})
}

// An Independent unit inside a child that fails, inside a root that
// commits: the independent unit's row and OnCommit hook stand at once;
// the child's row and OnCommit hook are gone; the connection of each is
// back in the pool.
func TestReview8NestIndependentInFailingChild(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := r8nOpen(t, s, 3)
		table := dbtest.CreateIDTable(t, db, "r8_indep")
		txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
		var hooks r8nHooks
		errFail := errors.New("fail")
		var childErr, indepErr error
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			hooks.add(t, ctx, "root")
			if err := r8nInsert(ctx, txs, s, table, 1); err != nil {
				return err
			}
			childErr = scoped.Run(ctx, func(ctx context.Context) error {
				hooks.add(t, ctx, "child")
				if err := r8nInsert(ctx, txs, s, table, 2); err != nil {
					return err
				}
				indepErr = scoped.Run(ctx, func(ctx context.Context) error {
					hooks.add(t, ctx, "independent")
					return r8nInsert(ctx, txs, s, table, 3)
				}, scoped.Independent())
				return errFail
			})
			return nil
		})
		if err != nil || indepErr != nil || !errors.Is(childErr, errFail) {
			t.Errorf("root %v, independent %v, child %v", err, indepErr, childErr)
		}
		if got, want := dbtest.IDs(t, db, table), []int64{1, 3}; !slices.Equal(got, want) {
			t.Errorf("rows %v, want %v", got, want)
		}
		if got, want := hooks.list(), []string{"commit independent", "rollback child", "commit root"}; !slices.Equal(got, want) {
			t.Errorf("hooks %q, want %q", got, want)
		}
		r8nIdle(t, db)
	})
}

// Two roots with WithRetry each save a row of their own, then run a
// child (the counter's service function, a Run with WithRetry) that
// reads then writes one counter row, both reading before either writes:
// on PostgreSQL under SERIALIZABLE one fails with 40001, on MariaDB one
// is a deadlock victim (1213). The child asks its root to run again, also
// when the root swallows its error; at the end the counter went up once
// per root and each root's row is saved exactly once.
func TestReview8NestRetryFromChildSavesOnce(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		for _, swallow := range []bool{false, true} {
			name := "root returns the child's error"
			if swallow {
				name = "root swallows the child's error"
			}
			t.Run(name, func(t *testing.T) {
				db := r8nOpen(t, s, 4)
				c := dbtest.CreateCounter(t, db, "r8_ctr", 2)
				var opts *sql.TxOptions
				if s.Name == "postgres" {
					opts = &sql.TxOptions{Isolation: sql.LevelSerializable}
				} else {
					c.Lock, c.Param = " LOCK IN SHARE MODE", "?"
				}
				log := dbtest.CreateIDTable(t, db, "r8_ctrlog")
				txs := scopedsql.NewTx(db, opts, scoped.WithTeardownErrorHook(nil))
				service := c.Service(txs.Current, scopedsql.Retryable)
				var mu sync.Mutex
				runs := map[int64]int{}
				errs := make(chan error, 2)
				for id := int64(1); id <= 2; id++ {
					go func() {
						errs <- scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
							mu.Lock()
							runs[id]++
							mu.Unlock()
							if err := r8nInsert(ctx, txs, s, log, id); err != nil {
								return err
							}
							err := service(ctx, 1)
							if swallow {
								return nil
							}
							return err
						}, scoped.WithRetry(5, scopedsql.Retryable))
					}()
				}
				for range 2 {
					if err := <-errs; err != nil {
						t.Errorf("root: %v", err)
					}
				}
				c.Check(t, 2)
				if got, want := dbtest.IDs(t, db, log), []int64{1, 2}; !slices.Equal(got, want) {
					t.Errorf("rows %v, want %v", got, want)
				}
				mu.Lock()
				if runs[1]+runs[2] < 3 {
					t.Errorf("roots ran %v: want one to have run again", runs)
				}
				mu.Unlock()
				r8nIdle(t, db)
			})
		}
	})
}

// PostgreSQL through lib/pq: a child whose own context is cancelled while
// its statement runs. lib/pq cancels the statement and marks the
// connection bad, so the whole transaction is gone, not only the child's
// savepoint: the child's ROLLBACK TO fails. The root, which handles the
// child's error and the failure of its own next statement and returns
// nil, must not report success: ErrNotCommitted, nothing saved, the
// connection returned.
func TestReview8NestChildCancelledMidStatementOnLibPQ(t *testing.T) {
	s := dbtest.Postgres(t)
	db := r8nOpen(t, s, 3)
	table := dbtest.CreateIDTable(t, db, "r8_cancel")
	txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
	var childErr, afterErr error
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		if err := r8nInsert(ctx, txs, s, table, 1); err != nil {
			return err
		}
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		childErr = scoped.Run(cctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.InsertID(table), 2); err != nil {
				return err
			}
			var pid int
			if err := tx.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				return err
			}
			watched := make(chan struct{})
			go func() {
				// Cancel once the sleep is seen running on the server: no
				// timing. Only this transaction's backend: other tests on the
				// same server may sleep too.
				defer close(watched)
				for {
					var n int
					if err := db.QueryRowContext(dbtest.Ctx(t), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query = 'SELECT pg_sleep(60)' AND state = 'active'", pid).Scan(&n); err != nil || n > 0 {
						cancel()
						return
					}
				}
			}()
			_, err = tx.ExecContext(ctx, "SELECT pg_sleep(60)")
			<-watched
			return err
		})
		afterErr = r8nInsert(ctx, txs, s, table, 3)
		return nil // handles both
	})
	t.Logf("root: %v\nchild: %v\nafter: %v", err, childErr, afterErr)
	if r8nState(childErr) != "57014" {
		t.Errorf("child = %v, want its cancelled statement's error (57014)", childErr)
	}
	if !errors.Is(err, scoped.ErrNotCommitted) {
		t.Errorf("root = %v, want ErrNotCommitted", err)
	}
	if got := dbtest.IDs(t, db, table); len(got) != 0 {
		t.Errorf("rows %v saved, want none", got)
	}
	r8nIdle(t, db)
}

// A child that panics on a real server is rolled back to its savepoint
// and the panic goes on; the parent recovers it, goes on and commits its
// own rows; the child's OnCommit hook does not run, its OnRollback does.
func TestReview8NestPanickingChildOnRealServer(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := r8nOpen(t, s, 2)
		table := dbtest.CreateIDTable(t, db, "r8_panic")
		txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
		var hooks r8nHooks
		var recovered any
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			hooks.add(t, ctx, "root")
			if err := r8nInsert(ctx, txs, s, table, 1); err != nil {
				return err
			}
			func() {
				defer func() { recovered = recover() }()
				_ = scoped.Run(ctx, func(ctx context.Context) error {
					hooks.add(t, ctx, "child")
					if err := r8nInsert(ctx, txs, s, table, 2); err != nil {
						return err
					}
					panic("child panics")
				})
			}()
			return r8nInsert(ctx, txs, s, table, 3)
		})
		if err != nil || recovered != "child panics" {
			t.Errorf("root %v, recovered %v", err, recovered)
		}
		if got, want := dbtest.IDs(t, db, table), []int64{1, 3}; !slices.Equal(got, want) {
			t.Errorf("rows %v, want %v", got, want)
		}
		if got, want := hooks.list(), []string{"rollback child", "commit root"}; !slices.Equal(got, want) {
			t.Errorf("hooks %q, want %q", got, want)
		}
		r8nIdle(t, db)
	})
}

// MariaDB: three levels; the grandchild is a deadlock victim (1213: InnoDB
// rolls back the whole transaction). The middle handles its error and
// returns nil, the root returns nil. The victim's root must not report
// success: ErrNotCommitted, none of its rows saved, its OnCommit hook not
// run. The other unit commits all its rows.
func TestReview8NestDeadlockInGrandchild(t *testing.T) {
	s := dbtest.MySQL(t)
	db := r8nOpen(t, s, 4)
	ctr := dbtest.Table("r8_dl")
	if _, err := db.ExecContext(dbtest.Ctx(t), "CREATE TABLE "+ctr+" (id INT PRIMARY KEY, n BIGINT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP TABLE "+ctr) })
	if _, err := db.ExecContext(dbtest.Ctx(t), "INSERT INTO "+ctr+" VALUES (1, 0), (2, 0)"); err != nil {
		t.Fatal(err)
	}
	own := dbtest.CreateIDTable(t, db, "r8_dlown")
	txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
	var both sync.WaitGroup
	both.Add(2)
	type result struct {
		id         int64
		err, gcErr error
		middleErr  error
	}
	var hooksMu sync.Mutex
	committed := map[int64]bool{}
	unit := func(id int64, first, second int) result {
		r := result{id: id}
		r.err = scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			if err := scoped.OnCommit(ctx, func(context.Context) {
				hooksMu.Lock()
				committed[id] = true
				hooksMu.Unlock()
			}); err != nil {
				return err
			}
			if err := r8nInsert(ctx, txs, s, own, id*10+1); err != nil {
				return err
			}
			r.middleErr = scoped.Run(ctx, func(ctx context.Context) error {
				if err := r8nInsert(ctx, txs, s, own, id*10+2); err != nil {
					return err
				}
				r.gcErr = scoped.Run(ctx, func(ctx context.Context) error {
					tx, err := txs.Current(ctx)
					if err != nil {
						both.Done()
						return err
					}
					if _, err := tx.ExecContext(ctx, "UPDATE "+ctr+" SET n = n + 1 WHERE id = ?", first); err != nil {
						both.Done()
						return err
					}
					both.Done()
					both.Wait()
					_, err = tx.ExecContext(ctx, "UPDATE "+ctr+" SET n = n + 1 WHERE id = ?", second)
					return err
				})
				return nil // handles the grandchild's error
			})
			return nil // handles the middle's
		})
		return r
	}
	results := make(chan result, 2)
	go func() { results <- unit(1, 1, 2) }()
	go func() { results <- unit(2, 2, 1) }()
	rs := []result{<-results, <-results}
	saved := dbtest.IDs(t, db, own)
	victims := 0
	for _, r := range rs {
		t.Logf("unit %d: root %v\nmiddle %v\ngrandchild %v", r.id, r.err, r.middleErr, r.gcErr)
		mine := slices.DeleteFunc(slices.Clone(saved), func(x int64) bool { return x/10 != r.id })
		if scopedsql.Retryable(r.gcErr) {
			victims++
			if !errors.Is(r.err, scoped.ErrNotCommitted) {
				t.Errorf("victim %d: root = %v, want ErrNotCommitted", r.id, r.err)
			}
			if len(mine) != 0 || committed[r.id] {
				t.Errorf("victim %d: rows %v saved, OnCommit ran %v: want none", r.id, mine, committed[r.id])
			}
			continue
		}
		if r.err != nil || r.middleErr != nil || r.gcErr != nil || !slices.Equal(mine, []int64{r.id*10 + 1, r.id*10 + 2}) || !committed[r.id] {
			t.Errorf("winner %d: root %v, middle %v, grandchild %v, rows %v, OnCommit ran %v", r.id, r.err, r.middleErr, r.gcErr, mine, committed[r.id])
		}
	}
	if victims != 1 {
		t.Fatalf("%d deadlock victims, want 1", victims)
	}
	r8nIdle(t, db)
}
