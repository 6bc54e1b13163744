package scopedpgxtest

import (
	"context"
	"database/sql"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
)

// pgxKit is pgx's driver of the kit cases (dbtest.KitCases): Isolate,
// compared with pool and scopedpgx.NewTx, the real pool.
type pgxKit struct {
	pool *pgxpool.Pool
	ddl  *sql.DB // pool through database/sql, for dbtest's tables
}

func newPgxKit(t *testing.T, maxConns int32) dbtest.KitCases[pgx.Tx] {
	pool := newPool(t, maxConns)
	ddl := stdlib.OpenDBFromPool(pool) // closing it leaves pool open
	t.Cleanup(func() { _ = ddl.Close() })
	return dbtest.KitCases[pgx.Tx]{Server: dbtest.Postgres(t), Driver: pgxKit{pool, ddl}}
}

func (k pgxKit) Real() dbtest.KitDB[pgx.Tx] {
	return k.db(scopedpgx.NewTx(k.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil)), k.pool)
}

func (k pgxKit) Isolate(t testing.TB) dbtest.KitDB[pgx.Tx] {
	db := Isolate(t, k.pool)
	return k.db(db.NewTx(scoped.WithTeardownErrorHook(nil)), db)
}

func (k pgxKit) NewTable(t *testing.T, prefix string, commitFailures bool) string {
	if commitFailures {
		return dbtest.CreateCommitFailureTable(t, k.ddl, prefix)
	}
	return dbtest.CreateIDTable(t, k.ddl, prefix)
}

func (pgxKit) Exec(ctx context.Context, tx pgx.Tx, query string, args ...any) error {
	_, err := tx.Exec(ctx, query, args...)
	return err
}

func (pgxKit) Retryable(err error) bool { return scopedpgx.Retryable(err) }

func (k pgxKit) db(txs *scoped.ScopedSession[pgx.Tx], db interface {
	execer
	querier
}) dbtest.KitDB[pgx.Tx] {
	return dbtest.KitDB[pgx.Tx]{
		Txs: txs,
		Exec: func(ctx context.Context, query string, args ...any) error {
			_, err := db.Exec(ctx, query, args...)
			return err
		},
		IDs: pgxNestingDB(txs, db).IDs,
		// An isolated database holds its connections acquired from pool.
		InUse: func() int { return int(k.pool.Stat().AcquiredConns()) },
	}
}

func TestKitCasesAsTheRealPool(t *testing.T) { newPgxKit(t, 4).CompareWithTheRealPool(t) }

func TestFailNowInsideAUnit(t *testing.T) { newPgxKit(t, 2).FailNowInsideAUnit(t) }

// Four tests at once, each holding a connection of the pool.
func TestParallelIsolatedTests(t *testing.T) { newPgxKit(t, 4).ParallelTests(t) }
