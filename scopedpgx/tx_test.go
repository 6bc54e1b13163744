package scopedpgx

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestTxEndsWithItsScope(t *testing.T) {
	pool := newPool(t, 4)
	table := newTable(t, pool, "pgx_end")
	for _, tc := range []struct {
		name   string
		commit bool
		want   []int
		stats  scoped.Stats
	}{
		{"Remove rolls back", false, nil, scoped.Stats{Created: 1, RolledBack: 1}},
		{"Commit commits", true, []int{1}, scoped.Stats{Created: 1, Committed: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewTx(pool, pgx.TxOptions{})
			ctx, scope := scoped.Begin(context.Background())
			defer scope.Remove()
			tx, err := r.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if again, _ := r.Current(ctx); again != tx {
				t.Fatal("second Current in the scope returned another transaction")
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			end := scope.Remove
			if tc.commit {
				end = scope.Commit
			}
			if err := end(); err != nil {
				t.Fatal(err)
			}
			if got := ids(t, pool, table); !slices.Equal(got, tc.want) {
				t.Errorf("rows %v, want %v", got, tc.want)
			}
			if got := r.Stats(); got != tc.stats {
				t.Errorf("stats %+v, want %+v", got, tc.stats)
			}
			if n := pool.Stat().AcquiredConns(); n != 0 {
				t.Errorf("%d connections still acquired", n)
			}
			if _, err := pool.Exec(context.Background(), "DELETE FROM "+table); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTxScopeWithoutCurrentTakesNoConnection(t *testing.T) {
	pool := newPool(t, 4)
	r := NewTx(pool, pgx.TxOptions{})
	before := pool.Stat().AcquireCount()
	_, scope := scoped.Begin(context.Background())
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := pool.Stat().AcquireCount() - before; n != 0 {
		t.Errorf("a scope that never asked for its transaction acquired %d connections", n)
	}
	if got := r.Stats(); got != (scoped.Stats{}) {
		t.Errorf("stats %+v, want none", got)
	}
}

// A handler may commit or roll back by hand. pgx then answers the scope's
// rollback with ErrTxClosed, which is nothing left to undo, not a failure;
// the core's default teardown (scoped.New without NewTx's Rollback) would
// count and log it as one.
func TestTxEndedByHandIsNotATeardownFailure(t *testing.T) {
	pool := newPool(t, 4)
	table := newTable(t, pool, "pgx_hand")
	for _, tc := range []struct {
		name string
		end  func(pgx.Tx, context.Context) error
		want []int
	}{
		{"commit", pgx.Tx.Commit, []int{1}},
		{"rollback", pgx.Tx.Rollback, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hooked []error
			r := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(func(_ context.Context, err error) {
				hooked = append(hooked, err)
			}))
			ctx, scope := scoped.Begin(context.Background())
			defer scope.Remove()
			tx, err := r.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			if err := tc.end(tx, ctx); err != nil {
				t.Fatal(err)
			}
			if err := scope.Remove(); err != nil {
				t.Errorf("Remove after a %s by hand: %v", tc.name, err)
			}
			if st := r.Stats(); st.Failed != 0 || st.RolledBack != 1 || len(hooked) != 0 {
				t.Errorf("stats %+v, hook saw %v: want one clean rollback", st, hooked)
			}
			if got := ids(t, pool, table); !slices.Equal(got, tc.want) {
				t.Errorf("rows %v, want %v", got, tc.want)
			}
			if _, err := pool.Exec(context.Background(), "DELETE FROM "+table); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A commit, unlike a rollback, must fail on a closed transaction: it cannot
// know whether the work was committed (by hand) or rolled back (by hand,
// or by a commit that failed), so it must not report success.
func TestTxScopeCommitAfterHandEndFails(t *testing.T) {
	pool := newPool(t, 4)
	for _, tc := range []struct {
		name string
		end  func(pgx.Tx, context.Context) error
	}{
		{"commit", pgx.Tx.Commit},
		{"rollback", pgx.Tx.Rollback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
			ctx, scope := scoped.Begin(context.Background())
			defer scope.Remove()
			tx, err := r.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.end(tx, ctx); err != nil {
				t.Fatal(err)
			}
			if err := scope.Commit(); !errors.Is(err, pgx.ErrTxClosed) {
				t.Errorf("Commit after a %s by hand: %v, want pgx.ErrTxClosed", tc.name, err)
			}
			if n := pool.Stat().AcquiredConns(); n != 0 {
				t.Errorf("%d connections still acquired", n)
			}
		})
	}
}

func TestTxSavepointsShareTheScopeTransaction(t *testing.T) {
	pool := newPool(t, 4)
	table := newTable(t, pool, "pgx_nest")
	r := NewTx(pool, pgx.TxOptions{})
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	tx, err := r.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	insert := func(db interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	}, id int) {
		t.Helper()
		if _, err := db.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id); err != nil {
			t.Fatal(err)
		}
	}
	insert(tx, 1)
	err = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
		insert(sp, 2)
		return errors.New("undo the savepoint")
	})
	if err == nil {
		t.Fatal("BeginFunc did not return the error")
	}
	if err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { insert(sp, 3); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, pool, table); !slices.Equal(got, []int{1, 3}) {
		t.Errorf("rows %v, want [1 3]", got)
	}
}
