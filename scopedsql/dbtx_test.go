package scopedsql_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

func TestDBTXServesTheScopesTransactionInsideAndThePoolOutside(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		table := dbtest.CreateIDTable(t, db, "scopedsql_dbtx")
		txs := scoped.New(scopedsql.Tx(db, nil))
		q := scopedsql.NewDBTX(db, txs)

		for id, commit := range map[int64]bool{1: true, 2: false} {
			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			if _, err := q.ExecContext(ctx, s.InsertID(table), id); err != nil {
				t.Fatal(err)
			}
			if !txs.Has(ctx) {
				t.Fatal("the statement ran without the scope's transaction")
			}
			// Outside the scope, the pool: the uncommitted row is not seen.
			if got := dbtest.IDs(t, q, table); slices.Contains(got, id) {
				t.Fatalf("outside the scope, ids = %v: the statement escaped the transaction", got)
			}
			// Inside, the transaction sees its own row.
			var n int
			if err := q.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			stmt, err := q.PrepareContext(ctx, "SELECT count(*) FROM "+table)
			if err != nil {
				t.Fatal(err)
			}
			var m int
			if err := stmt.QueryRowContext(ctx).Scan(&m); err != nil {
				t.Fatal(err)
			}
			_ = stmt.Close()
			if n < 1 || m != n {
				t.Fatalf("inside the scope, count = %d (prepared: %d), want the transaction's own row", n, m)
			}
			if commit {
				err = scope.Commit()
			} else {
				err = scope.Remove()
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1}) {
			t.Errorf("ids = %v, want [1]", got)
		}
		// Outside any scope, a statement runs on the pool by itself.
		if _, err := q.ExecContext(dbtest.Ctx(t), s.InsertID(table), 3); err != nil {
			t.Fatal(err)
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{1, 3}) {
			t.Errorf("ids = %v, want [1 3]", got)
		}
		wantInUse(t, db, 0)
	})
}

// A scope whose transaction cannot be begun runs nothing, anywhere, and
// every method says why, QueryRowContext's Row included.
func TestDBTXWithoutATransactionRunsNothing(t *testing.T) {
	t.Parallel()
	db, mock := newMock(t)
	mock.ExpectBegin().WillReturnError(errBoom)
	q := scopedsql.NewDBTX(db, scoped.New(scopedsql.Tx(db, nil)))

	ctx, scope := scoped.Begin(context.Background())
	var n int
	if err := q.QueryRowContext(ctx, "SELECT 1").Scan(&n); !errors.Is(err, errBoom) {
		t.Errorf("QueryRowContext: Scan = %v, want an error wrapping %v", err, errBoom)
	}
	_ = scope.Remove()
	// The scope has ended: no transaction, and no fallback to the pool.
	if _, err := q.ExecContext(ctx, "UPDATE t SET n = 1"); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Errorf("ExecContext = %v, want an error wrapping ErrScopeClosed", err)
	}
	if _, err := q.QueryContext(ctx, "SELECT 1"); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Errorf("QueryContext = %v, want an error wrapping ErrScopeClosed", err)
	}
	if _, err := q.PrepareContext(ctx, "SELECT 1"); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Errorf("PrepareContext = %v, want an error wrapping ErrScopeClosed", err)
	}
	wantMet(t, mock) // no statement reached the database
	wantInUse(t, db, 0)
}
