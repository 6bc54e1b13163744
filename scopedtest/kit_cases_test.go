package scopedtest_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
	"github.com/go-scoped/scoped/scopedtest"
)

// sqlKit is database/sql's driver of the kit cases (dbtest.KitCases):
// IsolatedDB, compared with plain, the real pool.
type sqlKit struct {
	s     dbtest.Server
	plain *sql.DB
}

func (k sqlKit) Real() dbtest.KitDB[*sql.Tx] { return sqlKitDB(k.plain) }

func (k sqlKit) Isolate(t testing.TB) dbtest.KitDB[*sql.Tx] {
	return sqlKitDB(scopedtest.IsolatedDB(t, k.s.Driver, k.s.DSN))
}

func (k sqlKit) NewTable(t *testing.T, prefix string, commitFailures bool) string {
	if commitFailures {
		return dbtest.CreateCommitFailureTable(t, k.plain, prefix)
	}
	return dbtest.CreateIDTable(t, k.plain, prefix)
}

func (sqlKit) Exec(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	_, err := tx.ExecContext(ctx, query, args...)
	return err
}

func (sqlKit) Retryable(err error) bool { return scopedsql.Retryable(err) }

func sqlKitDB(db *sql.DB) dbtest.KitDB[*sql.Tx] {
	return dbtest.KitDB[*sql.Tx]{
		Txs: scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil)),
		Exec: func(ctx context.Context, query string, args ...any) error {
			_, err := db.ExecContext(ctx, query, args...)
			return err
		},
		IDs:   func(t testing.TB, table string) []int64 { return dbtest.IDs(t, db, table) },
		InUse: func() int { return db.Stats().OpenConnections },
	}
}

// eachKit runs f with the kit cases on every server.
func eachKit(t *testing.T, f func(dbtest.KitCases[*sql.Tx], *testing.T)) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		f(dbtest.KitCases[*sql.Tx]{Server: s, Driver: sqlKit{s, plainDB(t, s)}}, t)
	})
}

func TestKitCasesAsTheRealPool(t *testing.T) {
	eachKit(t, dbtest.KitCases[*sql.Tx].CompareWithTheRealPool)
}

func TestFailNowInsideAUnit(t *testing.T) { eachKit(t, dbtest.KitCases[*sql.Tx].FailNowInsideAUnit) }

func TestParallelIsolatedTests(t *testing.T) { eachKit(t, dbtest.KitCases[*sql.Tx].ParallelTests) }
