package scopedpgx

import (
	"context"
	"testing"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// rlsPool is a pool of at most maxConns connections of s, logged in as
// role, in mode.
func rlsPool(t *testing.T, s dbtest.Server, maxConns int32, mode pgx.QueryExecMode) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.DefaultQueryExecMode = mode
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Row-level security with the setup: two tenants, many concurrent requests
// through scopedhttp on a small pool, logged in as a role that is no
// superuser: no request sees a row of the other tenant, each sees all of
// its own, writes land under their own tenant, a request without a tenant
// sends nothing. The same through PgBouncer in transaction pooling mode,
// with the query modes that work there (no named prepared statements:
// PgBouncer 1.18 hands each transaction any server connection).
func TestRowLevelSecuritySetupThroughScopedHTTP(t *testing.T) {
	for _, c := range []struct {
		name    string
		bouncer bool
		mode    pgx.QueryExecMode
	}{
		{"direct", false, pgx.QueryExecModeCacheStatement},
		{"pgbouncer/exec", true, pgx.QueryExecModeExec},
		{"pgbouncer/simple", true, pgx.QueryExecModeSimpleProtocol},
		{"pgbouncer/cachedescribe", true, pgx.QueryExecModeCacheDescribe},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := dbtest.Postgres(t)
			admin := newPool(t, 2)
			rls := dbtest.CreateRLS(t, func(q string) error {
				_, err := admin.Exec(context.Background(), q)
				return err
			}, 20)
			app := s.As(t, rls.Role)
			if c.bouncer {
				app = dbtest.PgBouncer(t, s, rls.Role, 2)
			}
			pool := rlsPool(t, app, 3, c.mode)
			txs := NewTx(pool, pgx.TxOptions{}, WithSetup(setTenant))

			dbtest.RLSApp[pgx.Tx]{
				Current:   txs.Current,
				NoTenant:  errNoTenant,
				TenantKey: tenantKey{},
				Insert: func(ctx context.Context, tx pgx.Tx, table, tenant string) error {
					_, err := tx.Exec(ctx, "INSERT INTO "+table+" (tenant) VALUES ($1)", tenant)
					return err
				},
				Tenants: func(ctx context.Context, tx pgx.Tx, table string) ([]string, error) {
					rows, _ := tx.Query(ctx, "SELECT tenant FROM "+table)
					return pgx.CollectRows(rows, pgx.RowTo[string])
				},
				Count: func(ctx context.Context, table, tenant string) (n int, err error) {
					err = admin.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE tenant = $1", tenant).Scan(&n)
					return n, err
				},
				Outside: scopedhttp.ReadOnlySafeMethods,
				Inside:  scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs)),
			}.Run(t, rls)
		})
	}
}
