package reliability_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// Nested units of work (spec §6) on the real servers, written
// as a user would write them.

func setN(ctx context.Context, p *pool, tx *sql.Tx, table string, id, n int) error {
	_, err := tx.ExecContext(ctx, sqlFor(p.srv, "UPDATE "+table+" SET n = $1 WHERE id = $2"), n, id)
	return err
}

func inUse(t *testing.T, p *pool) {
	t.Helper()
	if n := p.DB.Stats().InUse; n != 0 {
		t.Errorf("%d connections still in use after the unit ended", n)
	}
}

// Three and four levels: a failed level undoes itself and every level
// released inside it, nothing else.
func TestDeepNesting(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := openPool(t, s, 1)
		table := createCounter(t, p, "scoped_rv_deep")
		txs := scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithTeardownErrorHook(nil))
		errLevel := errors.New("level failed")
		var e2, e3, e4 error
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if err := setN(ctx, p, tx, table, 1, 1); err != nil {
				return err
			}
			e2 = scoped.Run(ctx, func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				if err := setN(ctx, p, tx, table, 2, 2); err != nil {
					return err
				}
				e3 = scoped.Run(ctx, func(ctx context.Context) error {
					tx, err := txs.Current(ctx)
					if err != nil {
						return err
					}
					if err := setN(ctx, p, tx, table, 1, 30); err != nil {
						return err
					}
					e4 = scoped.Run(ctx, func(ctx context.Context) error {
						tx, err := txs.Current(ctx)
						if err != nil {
							return err
						}
						return setN(ctx, p, tx, table, 2, 40) // released into level 3
					})
					if e4 != nil {
						return e4
					}
					return errLevel // level 3 fails after its writes and level 4's
				})
				return nil // level 2 handles level 3's error
			})
			return e2
		})
		if err != nil || e2 != nil || e4 != nil || !errors.Is(e3, errLevel) {
			t.Fatalf("root %v, 2: %v, 3: %v, 4: %v", err, e2, e3, e4)
		}
		if a, b := counterValue(t, p, table, 1), counterValue(t, p, table, 2); a != 1 || b != 2 {
			t.Fatalf("rows %d %d, want 1 2", a, b)
		}
		inUse(t, p)
	})
}

// A child that is not the first user of the transaction: the root never
// asked for it, the grandchild is the first statement of the transaction.
func TestGrandchildIsFirstStatement(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := openPool(t, s, 1)
		table := createCounter(t, p, "scoped_rv_first")
		txs := scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithTeardownErrorHook(nil))
		errFail := errors.New("fail")
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			_ = scoped.Run(ctx, func(ctx context.Context) error {
				return scoped.Run(ctx, func(ctx context.Context) error {
					tx, err := txs.Current(ctx)
					if err != nil {
						return err
					}
					if err := setN(ctx, p, tx, table, 1, 5); err != nil {
						return err
					}
					return errFail
				})
			})
			return scoped.Run(ctx, func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				return setN(ctx, p, tx, table, 2, 6)
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if a, b := counterValue(t, p, table, 1), counterValue(t, p, table, 2); a != 0 || b != 6 {
			t.Fatalf("rows %d %d, want 0 6", a, b)
		}
		inUse(t, p)
	})
}

// A child begun with scoped.Begin and ended by hand: Commit releases,
// Remove undoes; a child left open when the root commits is rolled back.
func TestHandEndedChild(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := openPool(t, s, 1)
		table := createCounter(t, p, "scoped_rv_hand")
		txs := scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithTeardownErrorHook(nil))
		var leftOpen *scoped.Scope
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			for i, commit := range []bool{true, false} {
				cctx, child := scoped.Begin(ctx)
				tx, err := txs.Current(cctx)
				if err != nil {
					return err
				}
				if err := setN(cctx, p, tx, table, i+1, 10+i); err != nil {
					return err
				}
				if commit {
					err = child.Commit()
				} else {
					err = child.Remove()
				}
				if err != nil {
					return err
				}
			}
			cctx, child := scoped.Begin(ctx)
			leftOpen = child
			tx, err := txs.Current(cctx)
			if err != nil {
				return err
			}
			return setN(cctx, p, tx, table, 2, 99) // never ended by its owner
		})
		if err != nil {
			t.Fatal(err)
		}
		if a, b := counterValue(t, p, table, 1), counterValue(t, p, table, 2); a != 10 || b != 0 {
			t.Fatalf("rows %d %d, want 10 0", a, b)
		}
		if err := leftOpen.Commit(); !errors.Is(err, scoped.ErrScopeClosed) {
			t.Errorf("Commit of a child its root ended: %v, want ErrScopeClosed", err)
		}
		inUse(t, p)
	})
}

// ScopedSession.Commit and Remove by hand inside a child unit end the
// child's savepoint, never the root's transaction.
func TestHandCommitInsideChild(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := openPool(t, s, 1)
		table := createCounter(t, p, "scoped_rv_handsess")
		txs := scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithTeardownErrorHook(nil))
		errRoot := errors.New("root fails")
		var c1, c2 error
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if err := setN(ctx, p, tx, table, 1, 1); err != nil {
				return err
			}
			c1 = scoped.Run(ctx, func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				if err := setN(ctx, p, tx, table, 2, 2); err != nil {
					return err
				}
				return txs.Commit(ctx)
			})
			c2 = scoped.Run(ctx, func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				if err := setN(ctx, p, tx, table, 1, 50); err != nil {
					return err
				}
				return txs.Remove(ctx)
			})
			return errRoot
		})
		if !errors.Is(err, errRoot) {
			t.Fatalf("root: %v (children %v, %v)", err, c1, c2)
		}
		t.Logf("children: %v / %v; root: %v", c1, c2, err)
		if a, b := counterValue(t, p, table, 1), counterValue(t, p, table, 2); a != 0 || b != 0 {
			t.Fatalf("rows %d %d, want 0 0: the root rolled back", a, b)
		}
		inUse(t, p)
	})
}

// errgroup fan-out: goroutines each in their own child Run on one
// transaction. The one that comes second gets ErrNestedBusy; the root
// commits the other's work; nothing stays busy.
func TestFanOutChildren(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := openPool(t, s, 2)
		table := createCounter(t, p, "scoped_rv_fan")
		txs := scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithTeardownErrorHook(nil))
		errs := make([]error, 2)
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			if _, err := txs.Current(ctx); err != nil {
				return err
			}
			first := make(chan struct{})
			release := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				errs[0] = scoped.Run(ctx, func(ctx context.Context) error {
					tx, err := txs.Current(ctx)
					close(first)
					if err != nil {
						return err
					}
					<-release
					return setN(ctx, p, tx, table, 1, 1)
				})
			}()
			go func() {
				defer wg.Done()
				<-first
				errs[1] = scoped.Run(ctx, func(ctx context.Context) error {
					tx, err := txs.Current(ctx)
					if err != nil {
						return err
					}
					return setN(ctx, p, tx, table, 2, 2)
				})
				close(release)
			}()
			wg.Wait()
			// After both ended, a sequential child works again.
			return scoped.Run(ctx, func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				_, err = tx.ExecContext(ctx, sqlFor(p.srv, "UPDATE "+table+" SET n = n + 100 WHERE id = $1"), 1)
				return err
			})
		})
		if err != nil || errs[0] != nil || !errors.Is(errs[1], scoped.ErrNestedBusy) {
			t.Fatalf("root %v, children %v / %v", err, errs[0], errs[1])
		}
		t.Logf("busy error: %v", errs[1])
		if a, b := counterValue(t, p, table, 1), counterValue(t, p, table, 2); a != 101 || b != 0 {
			t.Fatalf("rows %d %d, want 101 0", a, b)
		}
		inUse(t, p)
	})
}

// Independent and Detach inside a child that fails inside a root that
// rolls back: their work is their own, committed.
func TestIndependentAndDetachInChild(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := openPool(t, s, 3)
		table := createCounter(t, p, "scoped_rv_indep")
		txs := scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithTeardownErrorHook(nil))
		errFail := errors.New("fail")
		var indep, det error
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if err := setN(ctx, p, tx, table, 1, 7); err != nil {
				return err
			}
			_ = scoped.Run(ctx, func(ctx context.Context) error {
				if _, err := txs.Current(ctx); err != nil {
					return err
				}
				indep = scoped.Run(ctx, func(ctx context.Context) error {
					// a child inside the independent unit joins it
					return scoped.Run(ctx, func(ctx context.Context) error {
						tx, err := txs.Current(ctx)
						if err != nil {
							return err
						}
						return setN(ctx, p, tx, table, 2, 3)
					})
				}, scoped.Independent())
				dctx, d := scoped.Detach(ctx)
				det = func() error {
					tx, err := txs.Current(dctx)
					if err != nil {
						return err
					}
					if _, err := tx.ExecContext(dctx, sqlFor(p.srv, "UPDATE "+table+" SET n = n + 10 WHERE id = $1"), 2); err != nil {
						d.Remove()
						return err
					}
					return d.Commit()
				}()
				return errFail
			})
			return errFail
		})
		if !errors.Is(err, errFail) || indep != nil || det != nil {
			t.Fatalf("root %v, independent %v, detached %v", err, indep, det)
		}
		if a, b := counterValue(t, p, table, 1), counterValue(t, p, table, 2); a != 0 || b != 13 {
			t.Fatalf("rows %d %d, want 0 13", a, b)
		}
		inUse(t, p)
	})
}

// Hooks in children three levels deep.
func TestHooksDeep(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := openPool(t, s, 1)
		_ = createCounter(t, p, "scoped_rv_hooks")
		txs := scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithTeardownErrorHook(nil))
		var mu sync.Mutex
		var got []string
		hook := func(ctx context.Context, name string) {
			_ = scoped.OnCommit(ctx, func(context.Context) { mu.Lock(); got = append(got, "commit "+name); mu.Unlock() })
			_ = scoped.OnRollback(ctx, func(context.Context) { mu.Lock(); got = append(got, "rollback "+name); mu.Unlock() })
		}
		errFail := errors.New("fail")
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			if _, err := txs.Current(ctx); err != nil {
				return err
			}
			hook(ctx, "root")
			_ = scoped.Run(ctx, func(ctx context.Context) error {
				hook(ctx, "c1")
				_ = scoped.Run(ctx, func(ctx context.Context) error {
					if _, err := txs.Current(ctx); err != nil {
						return err
					}
					hook(ctx, "g1")
					return nil
				})
				return errFail // undoes g1 too
			})
			return scoped.Run(ctx, func(ctx context.Context) error {
				hook(ctx, "c2")
				return scoped.Run(ctx, func(ctx context.Context) error {
					hook(ctx, "g2")
					return nil
				})
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		want := "[rollback c1 rollback g1 commit root commit c2 commit g2]"
		if g := fmtList(got); g != want {
			// order of the rollback of c1 vs g1 may differ; report
			t.Errorf("hooks %s, want %s", g, want)
		}
		inUse(t, p)
	})
}

func fmtList(s []string) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out + "]"
}

// MariaDB: after a deadlock in a child unit rolled the whole transaction
// back (the child's savepoint is gone, the parent poisoned), the caller
// handles the child's error and runs another service function as a child
// unit. That child's savepoint is asked for on the poisoned transaction:
// its writes run outside any transaction and are saved at once, while the
// root reports ErrNotCommitted. The core knows the transaction is poisoned
// when the second child joins it; the join should fail saying why.
func TestChildAfterPoisonedSiblingSavesNothing(t *testing.T) {
	s := dbtest.MySQL(t)
	p := openPool(t, s, 4)
	counter := createCounter(t, p, "scoped_rv_dlnext")
	own := dbtest.CreateIDTable(t, p.admin, "scoped_rv_dlnext_own")
	txs := scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithTeardownErrorHook(nil))
	var both sync.WaitGroup
	both.Add(2)
	type result struct {
		id                     int64
		err, childErr, nextErr error
	}
	unit := func(id int64, first, second int) result {
		var childErr, nextErr error
		err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.InsertID(own), id); err != nil {
				return err
			}
			childErr = scoped.Run(ctx, func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, "UPDATE "+counter+" SET n = n + 1 WHERE id = ?", first); err != nil {
					both.Done()
					return err
				}
				both.Done()
				both.Wait()
				_, err = tx.ExecContext(ctx, "UPDATE "+counter+" SET n = n + 1 WHERE id = ?", second)
				return err
			})
			// Another service function, its own unit of work.
			nextErr = scoped.Run(ctx, func(ctx context.Context) error {
				tx, err := txs.Current(ctx)
				if err != nil {
					return err
				}
				_, err = tx.ExecContext(ctx, s.InsertID(own), id+100)
				return err
			})
			return nil
		})
		return result{id, err, childErr, nextErr}
	}
	results := make(chan result, 2)
	go func() { results <- unit(1, 1, 2) }()
	go func() { results <- unit(2, 2, 1) }()
	rs := []result{<-results, <-results}
	saved := map[int64]bool{}
	for _, id := range dbtest.IDs(t, p.admin, own) {
		saved[id] = true
	}
	deadlocks := 0
	for _, r := range rs {
		if !scopedsql.Retryable(r.childErr) {
			continue
		}
		deadlocks++
		if !errors.Is(r.err, scoped.ErrNotCommitted) {
			t.Errorf("victim %d: Run %v, want ErrNotCommitted", r.id, r.err)
		}
		if saved[r.id+100] {
			t.Errorf("victim %d: the unit reported %v, yet the second child's row %d is saved (second child: %v)", r.id, r.err, r.id+100, r.nextErr)
		}
		if r.nextErr == nil {
			t.Errorf("victim %d: the second child joined a poisoned transaction without an error", r.id)
		}
	}
	if deadlocks == 0 {
		t.Fatal("no deadlock happened: the test did not exercise its case")
	}
}
