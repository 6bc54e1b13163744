package scopedpgxtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx/internal/pgxkit"
	"github.com/go-scoped/scoped/scopedtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(scopedtest.CheckScopesM(m)) }

// newPool is pgxkit.Pool: a pool of the test server, closed when t ends.
func newPool(t testing.TB, maxConns int32) *pgxpool.Pool {
	return pgxkit.Pool(t, maxConns)
}

// newTable creates a table (id int primary key) with a unique name,
// dropped when t ends. Call it before Isolate, so that the drop runs after
// the test's rollback.
func newTable(t testing.TB, pool *pgxpool.Pool, prefix string) string {
	t.Helper()
	name := pgx.Identifier{dbtest.Table(prefix)}.Sanitize()
	if _, err := pool.Exec(dbtest.Ctx(t), "CREATE TABLE "+name+" (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP TABLE "+name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return name
}

// querier is what ids reads through: a pool, a DB, a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// execer is what insert writes through.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// ids returns the ids in table, in order, as q sees them.
func ids(t testing.TB, q querier, table string) []int {
	t.Helper()
	return idsIn(dbtest.Ctx(t), t, q, table)
}

// idsIn is ids in ctx, which may carry a scope.
func idsIn(ctx context.Context, t testing.TB, q querier, table string) []int {
	t.Helper()
	rs, err := q.Query(ctx, "SELECT id FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rs, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// insert inserts id into table through e.
func insert(ctx context.Context, e execer, table string, id int) error {
	_, err := e.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id)
	return err
}
