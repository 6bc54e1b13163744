package scopedpgx

import (
	"context"
	"testing"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx/internal/pgxkit"
	"github.com/go-scoped/scoped/scopedtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(scopedtest.CheckScopesM(m)) }

// newPool is pgxkit.Pool: a pool of the test server, closed when t ends.
func newPool(t testing.TB, maxConns int32, params ...string) *pgxpool.Pool {
	return pgxkit.Pool(t, maxConns, params...)
}

// newTable creates a table (id int primary key, n int) with a unique name,
// dropped when t ends.
func newTable(t testing.TB, pool *pgxpool.Pool, prefix string) string {
	t.Helper()
	name := dbtest.Table(prefix)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := pool.Exec(context.Background(), "CREATE TABLE "+ident+" (id int PRIMARY KEY, n int NOT NULL DEFAULT 0)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP TABLE "+ident); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return ident
}

// ids returns the ids in table, in order.
func ids(t testing.TB, pool *pgxpool.Pool, table string) []int {
	t.Helper()
	rs, err := pool.Query(context.Background(), "SELECT id FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rs, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// awaitActive returns once the backend pid is running a query that starts
// with prefix. It polls pg_stat_activity on its own connection, so pool's
// statistics stay those of the code under test. No deadline: the test's
// own timeout bounds it.
func awaitActive(t testing.TB, pid uint32, prefix string) {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dbtest.Postgres(t).DSN)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close(context.Background())
	for {
		var n int
		err := c.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE pid = $1 AND state = 'active' AND starts_with(query, $2)`, int32(pid), prefix).Scan(&n)
		if err != nil {
			t.Error(err)
			return
		}
		if n > 0 {
			return
		}
	}
}
