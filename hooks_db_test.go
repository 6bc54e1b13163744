package scoped_test

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
)

// On real servers, units three deep run concurrently, each level failing
// for some of them: the OnCommit hooks that ran name exactly the rows
// that were saved, and the OnRollback hooks that ran exactly the rows
// that were written and undone (nesting by SAVEPOINT, RELEASE and
// ROLLBACK TO).
func TestHooksMatchTheSavedRowsOnRealServers(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db, err := sql.Open(s.Driver, s.DSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() }) // after the table's drop
		db.SetMaxOpenConns(8)
		table := dbtest.CreateIDTable(t, db, "hooks_three_deep")
		txs := scopedsql.NewTx(db, nil)
		errFail := errors.New("fail")

		var mu sync.Mutex
		var committed, rolledBack []int64
		note := func(list *[]int64, id int64) func(context.Context) {
			return func(ctx context.Context) {
				if _, ok := scoped.FromContext(ctx); ok {
					t.Error("a hook's context carries a scope")
				}
				mu.Lock()
				*list = append(*list, id)
				mu.Unlock()
			}
		}
		// level writes id in ctx's unit and registers its hooks; it fails
		// when fail says so.
		level := func(ctx context.Context, id int64, fail bool, inner func(ctx context.Context) error) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.InsertID(table), id); err != nil {
				return err
			}
			if err := scoped.OnCommit(ctx, note(&committed, id)); err != nil {
				return err
			}
			if err := scoped.OnRollback(ctx, note(&rolledBack, id)); err != nil {
				return err
			}
			if inner != nil {
				_ = scoped.Run(ctx, inner) // a failed child is undone alone
			}
			if fail {
				return errFail
			}
			return nil
		}
		const units = 32
		var wg sync.WaitGroup
		for u := range int64(units) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				root, child, gc := u*10+1, u*10+2, u*10+3
				err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
					return level(ctx, root, u%4 == 1, func(ctx context.Context) error {
						return level(ctx, child, u%4 == 2, func(ctx context.Context) error {
							return level(ctx, gc, u%4 == 3, nil)
						})
					})
				})
				if err != nil && !errors.Is(err, errFail) {
					t.Errorf("unit %d: %v", u, err)
				}
			}()
		}
		wg.Wait()

		saved := dbtest.IDs(t, db, table)
		slices.Sort(committed)
		if !slices.Equal(committed, saved) {
			t.Errorf("OnCommit hooks ran for %v, saved rows %v", committed, saved)
		}
		var undone []int64
		for u := range int64(units) {
			for l := int64(1); l <= 3; l++ {
				if id := u*10 + l; !slices.Contains(saved, id) {
					undone = append(undone, id)
				}
			}
		}
		slices.Sort(rolledBack)
		if !slices.Equal(rolledBack, undone) {
			t.Errorf("OnRollback hooks ran for %v, rows written and undone %v", rolledBack, undone)
		}
		if len(saved) == 0 || len(undone) == 0 {
			t.Errorf("saved %v, undone %v: the test must see both", saved, undone)
		}
	})
}

// A COMMIT the server refuses (PostgreSQL, a deferred constraint failing
// with 40001) runs the OnRollback hooks, not the OnCommit hooks; under a
// Run WithRetry, the failed attempt's OnCommit hooks are dropped and the
// attempt that commits runs its own.
func TestHooksWhenTheServerRefusesTheCommit(t *testing.T) {
	s := dbtest.Postgres(t)
	db, err := sql.Open(s.Driver, s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() }) // after the table's drop
	table := dbtest.CreateCommitFailureTable(t, db, "hooks_commit_refused")
	txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil)) // the refused commit is expected
	var mu sync.Mutex
	var ran []string
	attempt := 0
	err = scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		attempt++
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		id := int64(attempt)
		if attempt == 1 {
			id = -1 // its COMMIT fails with 40001
		}
		if _, err := tx.ExecContext(ctx, s.InsertID(table), id); err != nil {
			return err
		}
		for _, kind := range []string{"commit", "rollback"} {
			name := fmt.Sprintf("%s %d", kind, attempt)
			f := func(context.Context) { mu.Lock(); ran = append(ran, name); mu.Unlock() }
			if kind == "commit" {
				err = scoped.OnCommit(ctx, f)
			} else {
				err = scoped.OnRollback(ctx, f)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}, scoped.WithRetry(2, scopedsql.Retryable))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"rollback 1", "commit 2"}; !slices.Equal(ran, want) {
		t.Errorf("hooks %q, want %q", ran, want)
	}
	if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{2}) {
		t.Errorf("rows %v, want [2]", got)
	}
}
