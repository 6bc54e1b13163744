package scopedsql_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// NewDBTX on the real servers: outside a scope each statement runs on the
// pool and commits on its own; inside a scope whose client left, or after
// the scope ended, nothing runs anywhere (no fallback to the pool, which
// would escape the unit's transaction) and the error says why; inside a
// live scope the statements are the transaction's, rolled back with it.
// No connection stays in use.
func TestReview7DBTXOutsideLeftAndClosedScopes(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		table := dbtest.CreateIDTable(t, db, "r7_dbtx")
		txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
		q := scopedsql.NewDBTX(db, txs)

		if _, err := q.ExecContext(dbtest.Ctx(t), s.InsertID(table), 1); err != nil {
			t.Fatalf("outside a scope: %v", err)
		}
		rows, err := q.QueryContext(dbtest.Ctx(t), "SELECT id FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}

		// A scope whose client left before its first statement.
		cause := errors.New("review7: client left")
		parent, cancel := context.WithCancelCause(dbtest.Ctx(t))
		ctx, scope := scoped.Begin(parent)
		cancel(cause)
		if _, err := q.ExecContext(ctx, s.InsertID(table), 2); !errors.Is(err, cause) {
			t.Errorf("Exec in a scope whose client left = %v, want its cause", err)
		}
		var n int
		if err := q.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); !errors.Is(err, cause) {
			t.Errorf("QueryRow in a scope whose client left: Scan = %v, want its cause", err)
		}
		scope.Remove()

		// A live scope rolled back, then used after its end.
		ctx, scope = scoped.Begin(dbtest.Ctx(t))
		if _, err := q.ExecContext(ctx, s.InsertID(table), 3); err != nil {
			t.Fatal(err)
		}
		scope.Remove()
		if _, err := q.ExecContext(ctx, s.InsertID(table), 4); !errors.Is(err, scoped.ErrScopeClosed) {
			t.Errorf("Exec after the scope ended = %v, want ErrScopeClosed", err)
		}
		if _, err := q.PrepareContext(ctx, "SELECT 1"); !errors.Is(err, scoped.ErrScopeClosed) {
			t.Errorf("Prepare after the scope ended = %v, want ErrScopeClosed", err)
		}
		if got := dbtest.IDs(t, db, table); len(got) != 1 || got[0] != 1 {
			t.Errorf("saved %v, want only the statement outside a scope: [1]", got)
		}
		wantInUse(t, db, 0)
	})
}
