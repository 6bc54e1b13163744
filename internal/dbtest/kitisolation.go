package dbtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/go-scoped/scoped"
)

// FailNowInsideAUnit checks that a test failing mid-unit (t.FailNow:
// runtime.Goexit inside scoped.Run) rolls the unit back as in production,
// runs its OnRollback hooks, leaves the isolated database usable for the
// test's next unit and its cleanups, and that its end leaves nothing
// behind: no row, no connection held.
func (k KitCases[T]) FailNowInsideAUnit(t *testing.T) {
	table := k.Driver.NewTable(t, "kit_failnow", false)
	ft := &FakeTB{TB: t}
	db := k.Driver.Isolate(ft)
	e := k.env(db, table)
	ctx := Ctx(t)
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
	if got, want := db.IDs(t, table), []int64{1}; !slices.Equal(got, want) {
		t.Errorf("after the failed unit the test sees %v, want %v", got, want)
	}
	if err := scoped.Run(ctx, func(ctx context.Context) error { return e.insert(ctx, 4) }); err != nil {
		t.Errorf("a unit after the failed one: %v", err)
	}
	if want := []string{"unit:rollback"}; !slices.Equal(e.hooks, want) {
		t.Errorf("hooks %v, want %v", e.hooks, want)
	}
	if errs := ft.End(); len(errs) != 0 {
		t.Errorf("the isolated database's end: %q", errs)
	}
	if got := k.Driver.Real().IDs(t, table); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
	if n := db.InUse(); n != 0 {
		t.Errorf("%d connections held after the test's end", n)
	}
}

// ParallelTests runs parallel tests, each with its own isolated database
// on one table and distinct keys, and checks that each sees its own rows
// and hooks only, and that none is left behind.
func (k KitCases[T]) ParallelTests(t *testing.T) {
	table := k.Driver.NewTable(t, "kit_parallel", false)
	t.Run("group", func(t *testing.T) {
		for i := range int64(4) {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				db := k.Driver.Isolate(t)
				e := k.env(db, table)
				ctx := Ctx(t)
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
				if got := db.IDs(t, table); !slices.Equal(got, want) {
					t.Errorf("sees %v, want %v", got, want)
				}
				if want := []string{"0:commit", "1:rollback", "2:commit"}; !slices.Equal(e.hooks, want) {
					t.Errorf("hooks %v, want %v", e.hooks, want)
				}
			})
		}
	})
	if got := k.Driver.Real().IDs(t, table); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
}
