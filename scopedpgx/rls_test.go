package scopedpgx

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// withTenant is the application's authentication: before scopedhttp's
// middleware, so that the tenant is in the context the unit begins with.
func withTenant(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tenant := r.Header.Get("X-Tenant"); tenant != "" {
			r = r.WithContext(context.WithValue(r.Context(), tenantKey{}, tenant))
		}
		next.ServeHTTP(w, r)
	})
}

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
					if _, err := tx.Exec(ctx, "INSERT INTO "+rls.Table+" (tenant) VALUES ($1)", tenant); err != nil {
						http.Error(w, err.Error(), http.StatusInternalServerError)
						return
					}
					w.WriteHeader(http.StatusCreated)
					return
				}
				rows, _ := tx.Query(ctx, "SELECT tenant FROM "+rls.Table)
				got, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				for _, g := range got {
					if g != tenant {
						foreign.Add(1)
					}
				}
				if len(got) < rls.PerTenant {
					short.Add(1)
				}
				w.WriteHeader(http.StatusOK)
			})
			h := scopedhttp.ReadOnlySafeMethods(withTenant(scopedhttp.Middleware(
				scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(mux)))

			const perTenant = 40
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
			for _, cl := range calls {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req := httptest.NewRequest(cl.method, "/", nil).WithContext(dbtest.Ctx(t))
					if cl.tenant != "" {
						req.Header.Set("X-Tenant", cl.tenant)
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != cl.want {
						t.Errorf("%s as %q: %d %s, want %d", cl.method, cl.tenant, rec.Code, rec.Body, cl.want)
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
				if err := admin.QueryRow(context.Background(), "SELECT count(*) FROM "+rls.Table+" WHERE tenant = $1", tenant).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if want := rls.PerTenant + perTenant/2; n != want {
					t.Errorf("tenant %s has %d rows, want %d", tenant, n, want)
				}
			}
		})
	}
}
