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
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
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
