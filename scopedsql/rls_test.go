package scopedsql_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

type tenantKey struct{}

// setTenant is the row-level security setup: the tenant, transaction-local.
func setTenant(ctx context.Context, tx *sql.Tx) error {
	tenant, ok := ctx.Value(tenantKey{}).(string)
	if !ok {
		return errNoTenant
	}
	_, err := tx.ExecContext(ctx, "SELECT set_config('app.tenant_id', $1, true)", tenant)
	return err
}

// Row-level security with the setup: two tenants, many concurrent requests
// through scopedhttp on a small pool, logged in as a role that is no
// superuser. No request ever sees a row of the other tenant, each sees all
// of its own, a write lands under its own tenant, and a request without a
// tenant runs no statement. The same through PgBouncer in transaction
// pooling mode, where nothing but transaction-local state can work.
func TestRowLevelSecuritySetupThroughScopedHTTP(t *testing.T) {
	t.Parallel()
	for _, via := range []string{"direct", "pgbouncer"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			s := dbtest.Postgres(t)
			admin := openDB(t, s)
			rls := dbtest.CreateRLS(t, func(q string) error {
				_, err := admin.ExecContext(context.Background(), q)
				return err
			}, 20)
			app := s.As(t, rls.Role)
			if via == "pgbouncer" {
				app = dbtest.PgBouncer(t, s, rls.Role, 2)
			}
			db := openDB(t, app)
			db.SetMaxOpenConns(3)
			txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(setTenant))

			dbtest.RLSApp[*sql.Tx]{
				Current:   txs.Current,
				NoTenant:  errNoTenant,
				TenantKey: tenantKey{},
				Insert: func(ctx context.Context, tx *sql.Tx, table, tenant string) error {
					_, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (tenant) VALUES ($1)", tenant)
					return err
				},
				Tenants: func(ctx context.Context, tx *sql.Tx, table string) ([]string, error) {
					rows, err := tx.QueryContext(ctx, "SELECT tenant FROM "+table)
					if err != nil {
						return nil, err
					}
					defer rows.Close()
					var got []string
					for rows.Next() {
						var g string
						if err := rows.Scan(&g); err != nil {
							return nil, err
						}
						got = append(got, g)
					}
					return got, rows.Err()
				},
				Count: func(ctx context.Context, table, tenant string) (n int, err error) {
					err = admin.QueryRowContext(ctx, "SELECT count(*) FROM "+table+" WHERE tenant = $1", tenant).Scan(&n)
					return n, err
				},
				Outside: scopedhttp.ReadOnlySafeMethods,
				Inside:  scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs)),
			}.Run(t, rls)
		})
	}
}
