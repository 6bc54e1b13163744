// Package dbtest finds the real database servers that integration tests
// run against, and names tables so that packages testing in parallel on
// one server never collide.
//
// Integration tests read SCOPED_TEST_POSTGRES_DSN and SCOPED_TEST_MYSQL_DSN.
// Without them the tests skip, saying how to enable them; with
// SCOPED_TEST_REQUIRE_DB=1 (set by .ci/run) a missing DSN fails instead, so
// CI never passes by skipping.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"testing"

	"github.com/go-scoped/scoped/internal/testkit"
)

// Environment variables read by this package.
const (
	PostgresEnv = "SCOPED_TEST_POSTGRES_DSN"
	MySQLEnv    = "SCOPED_TEST_MYSQL_DSN"
	RequireEnv  = "SCOPED_TEST_REQUIRE_DB"
)

// Server is one database server under test.
type Server struct {
	Name   string // "postgres" or "mysql"
	Driver string // database/sql driver name: "postgres" (lib/pq) or "mysql"
	DSN    string
}

// Postgres returns the PostgreSQL server, or skips t.
func Postgres(t testing.TB) Server {
	t.Helper()
	return Server{Name: "postgres", Driver: "postgres", DSN: dsn(t, PostgresEnv,
		"postgres://postgres@127.0.0.1:5432/test?sslmode=disable")}
}

// MySQL returns the MySQL/MariaDB server, or skips t. The DSN is in
// go-sql-driver/mysql form.
func MySQL(t testing.TB) Server {
	t.Helper()
	return Server{Name: "mysql", Driver: "mysql", DSN: dsn(t, MySQLEnv, "root@tcp(127.0.0.1:3306)/test")}
}

// Each runs f as a subtest for every configured server.
func Each(t *testing.T, f func(t *testing.T, s Server)) {
	t.Helper()
	t.Run("postgres", func(t *testing.T) { f(t, Postgres(t)) })
	t.Run("mysql", func(t *testing.T) { f(t, MySQL(t)) })
}

func dsn(t testing.TB, env, example string) string {
	t.Helper()
	if v := os.Getenv(env); v != "" {
		return v
	}
	if os.Getenv(RequireEnv) != "" {
		t.Fatalf("%s is not set but %s requires the database tests", env, RequireEnv)
	}
	t.Skipf("integration test: set %s to enable it, for example %s=%q", env, env, example)
	return ""
}

// Table returns a fresh table name with the given prefix, unique across
// concurrently running test binaries.
func Table(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

// Bound is how long a test waits on a server before it fails instead of
// hanging: the test kit's bound. It is never a timing assertion.
const Bound = testkit.Bound

// Ctx returns a context that ends after [Bound] or with t.
func Ctx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Bound)
	t.Cleanup(cancel)
	return ctx
}

// CreateIDTable creates a fresh table (id BIGINT PRIMARY KEY) named after
// prefix, and drops it when t ends.
func CreateIDTable(t testing.TB, db *sql.DB, prefix string) string {
	t.Helper()
	name := Table(prefix)
	if _, err := db.ExecContext(Ctx(t), "CREATE TABLE "+name+" (id BIGINT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Bound)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP TABLE "+name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return name
}

// InsertID is the INSERT of one id into table, in s's placeholder syntax.
func (s Server) InsertID(table string) string {
	if s.Name == "postgres" {
		return "INSERT INTO " + table + " (id) VALUES ($1)"
	}
	return "INSERT INTO " + table + " (id) VALUES (?)"
}

// BackendIDQuery returns the query for the server's id of the connection
// it runs on.
func (s Server) BackendIDQuery() string {
	if s.Name == "postgres" {
		return "SELECT pg_backend_pid()"
	}
	return "SELECT CONNECTION_ID()"
}

// Querier is what IDs reads through: a *sql.DB, *sql.Conn or *sql.Tx.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// IDs returns the ids in table, ascending, as q sees them.
func IDs(t testing.TB, q Querier, table string) []int64 {
	t.Helper()
	rows, err := q.QueryContext(Ctx(t), "SELECT id FROM "+table+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// CreateCommitFailureTable creates a fresh id table (see [CreateIDTable])
// on PostgreSQL whose deferred constraint trigger fails the COMMIT of a
// transaction that inserted a negative id with SQLSTATE 40001
// (serialization_failure), and one that inserted an id of 1,000,000 or
// more with 23514 (check_violation): real commit failures, on demand.
func CreateCommitFailureTable(t testing.TB, db *sql.DB, prefix string) string {
	t.Helper()
	table := CreateIDTable(t, db, prefix)
	ddl := fmt.Sprintf(`
CREATE FUNCTION %[1]s_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id < 0 THEN
		RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = 'serialization_failure';
	END IF;
	IF NEW.id >= 1000000 THEN
		RAISE EXCEPTION 'injected commit failure' USING ERRCODE = 'check_violation';
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER %[1]s_check AFTER INSERT ON %[1]s
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %[1]s_check();`, table)
	if _, err := db.ExecContext(Ctx(t), ddl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Runs before CreateIDTable's cleanup drops the table; CASCADE takes the trigger.
		ctx, cancel := context.WithTimeout(context.Background(), Bound)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP FUNCTION "+table+"_check() CASCADE"); err != nil {
			t.Errorf("drop function: %v", err)
		}
	})
	return table
}
