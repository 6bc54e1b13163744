package scopedtest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
	"github.com/go-scoped/scoped/scopedtest"
)

// Nesting under IsolatedDB: cases dbtest.CompareNesting does not
// run, each compared with the real pool.

type reviewOutcome struct {
	IDs      []int64
	Root     string
	Children []string
}

func errKind(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, scoped.ErrNestedBusy):
		return "ErrNestedBusy"
	case errors.Is(err, scoped.ErrNotCommitted):
		return "ErrNotCommitted"
	}
	return "error"
}

// nestingCases: a child that handles its own failed statement and returns
// nil (PostgreSQL refuses its RELEASE), three levels with the middle one
// failing after the deepest released, fan-out of two children at once.
var nestingCases = map[string]func(ctx context.Context, s dbtest.Server, txs *scoped.ScopedSession[*sql.Tx], table string) ([]error, error){
	"child swallows its failed statement": func(ctx context.Context, s dbtest.Server, txs *scoped.ScopedSession[*sql.Tx], table string) ([]error, error) {
		var child error
		err := scoped.Run(ctx, func(ctx context.Context) error {
			if err := reviewInsert(ctx, s, txs, table, 1); err != nil {
				return err
			}
			child = scoped.Run(ctx, func(ctx context.Context) error {
				if err := reviewInsert(ctx, s, txs, table, 2); err != nil {
					return err
				}
				_ = reviewInsert(ctx, s, txs, table, 2) // duplicate key, handled
				return nil
			})
			return reviewInsert(ctx, s, txs, table, 3)
		})
		return []error{child}, err
	},
	"middle fails after the deepest released": func(ctx context.Context, s dbtest.Server, txs *scoped.ScopedSession[*sql.Tx], table string) ([]error, error) {
		var mid, deep error
		err := scoped.Run(ctx, func(ctx context.Context) error {
			if err := reviewInsert(ctx, s, txs, table, 1); err != nil {
				return err
			}
			mid = scoped.Run(ctx, func(ctx context.Context) error {
				if err := reviewInsert(ctx, s, txs, table, 2); err != nil {
					return err
				}
				deep = scoped.Run(ctx, func(ctx context.Context) error {
					return reviewInsert(ctx, s, txs, table, 3)
				})
				return errors.New("middle fails")
			})
			return reviewInsert(ctx, s, txs, table, 4)
		})
		return []error{mid, deep}, err
	},
	"two children at once": func(ctx context.Context, s dbtest.Server, txs *scoped.ScopedSession[*sql.Tx], table string) ([]error, error) {
		errs := make([]error, 2)
		err := scoped.Run(ctx, func(ctx context.Context) error {
			if err := reviewInsert(ctx, s, txs, table, 1); err != nil {
				return err
			}
			open := make(chan struct{})
			done := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				errs[0] = scoped.Run(ctx, func(ctx context.Context) error {
					err := reviewInsert(ctx, s, txs, table, 2)
					close(open)
					<-done
					return err
				})
			}()
			go func() {
				defer wg.Done()
				defer close(done)
				<-open
				errs[1] = scoped.Run(ctx, func(ctx context.Context) error {
					return reviewInsert(ctx, s, txs, table, 3)
				})
			}()
			wg.Wait()
			return nil
		})
		return errs, err
	},
}

func reviewInsert(ctx context.Context, s dbtest.Server, txs *scoped.ScopedSession[*sql.Tx], table string, id int64) error {
	tx, err := txs.Current(ctx)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, s.InsertID(table), id)
	return err
}

func TestIsolatedDBNestsAsTheRealPoolMoreCases(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		plain := plainDB(t, s)
		names := make([]string, 0, len(nestingCases))
		for name := range nestingCases {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			c := nestingCases[name]
			t.Run(name, func(t *testing.T) {
				realTable := dbtest.CreateIDTable(t, plain, "scopedtest_rv")
				isoTable := dbtest.CreateIDTable(t, plain, "scopedtest_rv_iso")
				run := func(t *testing.T, db *sql.DB, table string) reviewOutcome {
					txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
					children, root := c(dbtest.Ctx(t), s, txs, table)
					o := reviewOutcome{IDs: dbtest.IDs(t, db, table), Root: errKind(root)}
					for _, e := range children {
						o.Children = append(o.Children, errKind(e))
					}
					return o
				}
				real := run(t, plain, realTable)
				var iso reviewOutcome
				t.Run("isolated", func(t *testing.T) {
					iso = run(t, scopedtest.IsolatedDB(t, s.Driver, s.DSN), isoTable)
				})
				if fmt.Sprint(real) != fmt.Sprint(iso) {
					t.Fatalf("real pool %+v, IsolatedDB %+v", real, iso)
				}
				t.Logf("%+v", real)
			})
		}
	})
}
