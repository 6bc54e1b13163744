package scopedtest_test

import (
	"context"
	"database/sql"
	"os"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedsql"
	"github.com/go-scoped/scoped/scopedtest"
)

// signup is the code under test: it commits a user in its own scope.
func signup(ctx context.Context, txs *scoped.ScopedSession[*sql.Tx], name string) error {
	ctx, scope := scoped.Begin(ctx)
	defer scope.Remove()
	tx, err := txs.Current(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO users (name) VALUES ($1)", name); err != nil {
		return err
	}
	return scope.Commit()
}

// A test whose committed writes are visible to the rest of the test and
// rolled back when it ends. (Not run here: it needs a PostgreSQL server
// with a users table.)
func ExampleIsolatedDB() {
	_ = func(t *testing.T) {
		db := scopedtest.IsolatedDB(t, "postgres", os.Getenv("TEST_DATABASE_URL"))
		txs := scoped.New(scopedsql.Tx(db, nil))

		if err := signup(t.Context(), txs, "ada"); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRow("SELECT count(*) FROM users WHERE name = 'ada'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%d users named ada, want 1", n)
		}
	} // when the test ends, ada is rolled back
}
