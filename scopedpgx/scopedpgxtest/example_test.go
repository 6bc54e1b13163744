package scopedpgxtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/go-scoped/scoped/scopedpgx/scopedpgxtest"
)

// pool is the suite's pool, opened once:
//
//	func TestMain(m *testing.M) {
//		pool, _ = pgxpool.New(context.Background(), os.Getenv("TEST_DATABASE_URL"))
//		goleak.VerifyTestMain(scopedtest.CheckScopesM(m))
//	}
var pool *pgxpool.Pool

// Service is the code under test, wired as in production but for the two
// values it is given: there scopedpgx.NewDBTX(pool, scopedpgx.NewTx(pool,
// pgx.TxOptions{})), here the isolated database's.
type Service struct{ db *scopedpgx.DBTX }

// Signup commits a user in a unit of work of its own.
func (s Service) Signup(ctx context.Context, name string) error {
	return scoped.Run(ctx, func(ctx context.Context) error {
		_, err := s.db.Exec(ctx, "INSERT INTO users (name) VALUES ($1)", name)
		return err
	})
}

// A test whose committed writes are visible to the rest of the test and
// rolled back when it ends. (Not run here: it needs a PostgreSQL server
// with a users table.)
func ExampleIsolate() {
	_ = func(t *testing.T) {
		db := scopedpgxtest.Isolate(t, pool)
		svc := Service{db: scopedpgx.NewDBTX(db, db.NewTx())}

		if err := svc.Signup(t.Context(), "ada"); err != nil { // a savepoint, released
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRow(t.Context(), "SELECT count(*) FROM users WHERE name = 'ada'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%d users named ada, want 1", n)
		}
	} // when the test ends, ada is rolled back
}
