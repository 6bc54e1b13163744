package scopedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

type tenantKey struct{}

// withTenant is the application's authentication: it runs before
// scopedhttp's middleware, so the tenant is in the context the unit's
// scope begins with, where the setup reads it.
func withTenant(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tenant := r.Header.Get("X-Tenant"); tenant != "" {
			r = r.WithContext(context.WithValue(r.Context(), tenantKey{}, tenant))
		}
		next.ServeHTTP(w, r)
	})
}

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

			var foreign, short, ranWithoutTenant atomic.Int64
			mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				tx, err := txs.Current(ctx)
				if errors.Is(err, errNoTenant) {
					http.Error(w, "no tenant", http.StatusForbidden)
					return
				}
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				tenant, ok := ctx.Value(tenantKey{}).(string)
				if !ok {
					ranWithoutTenant.Add(1)
				}
				if r.Method == http.MethodPost {
					if _, err := tx.ExecContext(ctx, "INSERT INTO "+rls.Table+" (tenant) VALUES ($1)", tenant); err != nil {
						http.Error(w, err.Error(), http.StatusInternalServerError)
						return
					}
					w.WriteHeader(http.StatusCreated)
					return
				}
				rows, err := tx.QueryContext(ctx, "SELECT tenant FROM "+rls.Table)
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				defer rows.Close()
				n := 0
				for rows.Next() {
					var got string
					if err := rows.Scan(&got); err != nil {
						http.Error(w, err.Error(), http.StatusInternalServerError)
						return
					}
					if got != tenant {
						foreign.Add(1)
					}
					n++
				}
				if err := rows.Err(); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				if n < rls.PerTenant {
					short.Add(1)
				}
				w.WriteHeader(http.StatusOK)
			})
			h := scopedhttp.ReadOnlySafeMethods(withTenant(scopedhttp.Middleware(
				scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(mux)))

			const perTenant = 40 // requests of each tenant, half of them writes
			type call struct {
				method, tenant string
				want           int
			}
			var calls []call
			for i := range perTenant {
				for _, tenant := range dbtest.Tenants {
					if i%2 == 0 {
						calls = append(calls, call{http.MethodPost, tenant, http.StatusCreated})
					} else {
						calls = append(calls, call{http.MethodGet, tenant, http.StatusOK})
					}
				}
				if i%4 == 0 {
					calls = append(calls, call{http.MethodGet, "", http.StatusForbidden})
				}
			}
			var wg sync.WaitGroup
			for _, c := range calls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req := httptest.NewRequest(c.method, "/", nil).WithContext(dbtest.Ctx(t))
					if c.tenant != "" {
						req.Header.Set("X-Tenant", c.tenant)
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != c.want {
						t.Errorf("%s as %q: %d %s, want %d", c.method, c.tenant, rec.Code, rec.Body, c.want)
					}
				}()
			}
			wg.Wait()
			if n := foreign.Load(); n != 0 {
				t.Errorf("%d rows of another tenant were seen", n)
			}
			if n := short.Load(); n != 0 {
				t.Errorf("%d reads saw fewer than their tenant's %d rows", n, rls.PerTenant)
			}
			if n := ranWithoutTenant.Load(); n != 0 {
				t.Errorf("%d requests without a tenant got a transaction", n)
			}
			for _, tenant := range dbtest.Tenants {
				var n int
				if err := admin.QueryRowContext(dbtest.Ctx(t), "SELECT count(*) FROM "+rls.Table+" WHERE tenant = $1", tenant).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if want := rls.PerTenant + perTenant/2; n != want {
					t.Errorf("tenant %s has %d rows, want %d", tenant, n, want)
				}
			}
		})
	}
}
