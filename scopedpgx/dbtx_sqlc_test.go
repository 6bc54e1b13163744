package scopedpgx_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
)

// The sqlc-shaped DBTX interface of example_sqlc_test.go is what
// scopedpgx.DBTX serves.
var _ DBTX = (*scopedpgx.DBTX)(nil)

// usersPool returns a pool whose connections find a fresh users table,
// unqualified as sqlc's queries name it, in a schema of their own that is
// dropped when t ends.
func usersPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	dsn := dbtest.Postgres(t).DSN
	schema := pgx.Identifier{dbtest.Table("scopedpgx_sqlc")}.Sanitize()
	admin, err := pgx.Connect(dbtest.Ctx(t), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	if _, err := admin.Exec(dbtest.Ctx(t), "CREATE SCHEMA "+schema+
		"; CREATE TABLE "+schema+".users (id bigserial PRIMARY KEY, username text NOT NULL UNIQUE)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(dbtest.Ctx(t), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func usernames(us []User) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.Username)
	}
	return out
}

// sqlc-shaped queries over scopedpgx.DBTX: every kind of query sqlc
// generates (:one, :many, :execrows, :copyfrom, :batchexec) runs in the
// scope's transaction inside a scope, rolled back or committed with it,
// and on the pool outside one.
func TestSQLCQueriesRunInTheScopesTransactionOrOnThePool(t *testing.T) {
	pool := usersPool(t)
	txs := scopedpgx.NewTx(pool, pgx.TxOptions{})
	queries := NewQueries(scopedpgx.NewDBTX(pool, txs))
	outside := dbtest.Ctx(t)
	list := func(ctx context.Context) []string {
		t.Helper()
		us, err := queries.ListUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return usernames(us)
	}

	work := func(ctx context.Context) error {
		ada, err := queries.CreateUser(ctx, "ada")
		if err != nil {
			return err
		}
		if _, err := queries.CreateUsers(ctx, []string{"bob", "cy"}); err != nil {
			return err
		}
		if n, err := queries.DeleteUser(ctx, "cy"); err != nil || n != 1 {
			return errors.Join(err, errors.New("DeleteUser did not see the copied row"))
		}
		var batchErr error
		queries.RenameUser(ctx, []RenameUserParams{{ID: ada.ID, Username: "ada lovelace"}}).Exec(func(_ int, err error) {
			batchErr = errors.Join(batchErr, err)
		})
		if batchErr != nil {
			return batchErr
		}
		if got := list(ctx); !slices.Equal(got, []string{"ada lovelace", "bob"}) {
			return fmt.Errorf("inside the scope: users %v", got)
		}
		if got := list(outside); len(got) != 0 {
			return fmt.Errorf("outside the scope, before the commit: users %v", got)
		}
		return nil
	}

	// Rolled back with its scope.
	errUndo := errors.New("undo")
	err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
		if err := work(ctx); err != nil {
			return err
		}
		return errUndo
	})
	if !errors.Is(err, errUndo) {
		t.Fatal(err)
	}
	if got := list(outside); len(got) != 0 {
		t.Fatalf("after the rollback: users %v", got)
	}
	// Committed with it.
	if err := scoped.Run(dbtest.Ctx(t), work); err != nil {
		t.Fatal(err)
	}
	if got := list(outside); !slices.Equal(got, []string{"ada lovelace", "bob"}) {
		t.Fatalf("after the commit: users %v", got)
	}
	// Outside a scope, on the pool, committed at once.
	if _, err := queries.CreateUser(outside, "dee"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(outside, "SELECT count(*) FROM users WHERE username = 'dee'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("count %d, %v: the statement outside a scope did not run on the pool", n, err)
	}
	if st := txs.Stats(); st.Created != 2 || st.Committed != 1 || st.RolledBack != 1 {
		t.Errorf("stats %+v, want two transactions, one committed, one rolled back", st)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired", n)
	}
}
