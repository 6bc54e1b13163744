package dbtest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// RLS is a PostgreSQL table under row-level security for the tests of
// per-unit setup: rows of tenants "a" and "b", each visible only to a
// transaction whose app.tenant_id is its tenant, to Role, a role made for
// the test that can log in and is no superuser (superusers bypass
// row-level security).
type RLS struct {
	Role, Table string
	PerTenant   int // rows of each tenant
}

// Tenants are the tenants whose rows CreateRLS inserts.
var Tenants = []string{"a", "b"}

// CreateRLS creates the role and the table with exec (run as a superuser),
// with perTenant rows for each of [Tenants], and drops both when t ends.
// The table is FORCE ROW LEVEL SECURITY, so even its owner is filtered,
// and its policy reads current_setting('app.tenant_id'): a transaction
// that did not set it fails.
func CreateRLS(t testing.TB, exec func(query string) error, perTenant int) RLS {
	t.Helper()
	r := RLS{Role: Table("rls_role"), Table: Table("rls"), PerTenant: perTenant}
	must := func(q string) {
		t.Helper()
		if err := exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	must("CREATE ROLE " + r.Role + " LOGIN NOSUPERUSER NOBYPASSRLS")
	t.Cleanup(func() {
		if err := exec("DROP ROLE " + r.Role); err != nil {
			t.Errorf("drop role %s: %v", r.Role, err)
		}
	})
	must("CREATE TABLE " + r.Table + " (id bigserial PRIMARY KEY, tenant text NOT NULL)")
	t.Cleanup(func() {
		if err := exec("DROP TABLE " + r.Table); err != nil {
			t.Errorf("drop table %s: %v", r.Table, err)
		}
	})
	must("ALTER TABLE " + r.Table + " ENABLE ROW LEVEL SECURITY")
	must("ALTER TABLE " + r.Table + " FORCE ROW LEVEL SECURITY")
	must("CREATE POLICY " + r.Table + "_tenant ON " + r.Table +
		" USING (tenant = current_setting('app.tenant_id')) WITH CHECK (tenant = current_setting('app.tenant_id'))")
	must("GRANT SELECT, INSERT ON " + r.Table + " TO " + r.Role)
	must("GRANT USAGE ON SEQUENCE " + r.Table + "_id_seq TO " + r.Role)
	for _, tenant := range Tenants {
		// As the superuser running exec, who bypasses the policy.
		must(fmt.Sprintf("INSERT INTO %s (tenant) SELECT '%s' FROM generate_series(1, %d)", r.Table, tenant, perTenant))
	}
	return r
}

// As returns s logging in as user (a postgres:// DSN).
func (s Server) As(t testing.TB, user string) Server {
	t.Helper()
	u, err := url.Parse(s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(user)
	s.DSN = u.String()
	return s
}

// RLSApp is the application of the row-level-security trial, written
// with one driver, whose transaction is Tx.
type RLSApp[Tx any] struct {
	// Current is the unit's transaction, begun with the setup that sets
	// app.tenant_id; NoTenant is the setup's error for a unit whose
	// context has no tenant.
	Current  func(ctx context.Context) (Tx, error)
	NoTenant error
	// TenantKey is the context key of the tenant (a string) that the
	// setup reads.
	TenantKey any
	// Insert writes a row of tenant into table through tx; Tenants reads
	// the tenant of every row of table that tx sees.
	Insert  func(ctx context.Context, tx Tx, table, tenant string) error
	Tenants func(ctx context.Context, tx Tx, table string) ([]string, error)
	// Count counts the rows of tenant in table, as the superuser.
	Count func(ctx context.Context, table, tenant string) (int, error)
	// Outside and Inside wrap the application's handler, outside the
	// tenant's authentication (scopedhttp.ReadOnlySafeMethods) and inside
	// it (scopedhttp's middleware, binding Current's scope).
	Outside, Inside func(http.Handler) http.Handler
}

// Run sends many concurrent requests of both tenants, half of them
// writes, and some without a tenant, through a's handler to r's table: no
// request sees a row of the other tenant, each sees all of its own, every
// write lands under its own tenant, and a request without a tenant gets
// no transaction.
func (a RLSApp[Tx]) Run(t *testing.T, r RLS) {
	t.Helper()
	var foreign, short, ranWithoutTenant atomic.Int64
	app := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx := req.Context()
		tx, err := a.Current(ctx)
		if errors.Is(err, a.NoTenant) {
			http.Error(w, "no tenant", http.StatusForbidden)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		tenant, ok := ctx.Value(a.TenantKey).(string)
		if !ok {
			ranWithoutTenant.Add(1)
		}
		if req.Method == http.MethodPost {
			if err := a.Insert(ctx, tx, r.Table, tenant); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusCreated)
			return
		}
		got, err := a.Tenants(ctx, tx, r.Table)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for _, g := range got {
			if g != tenant {
				foreign.Add(1)
			}
		}
		if len(got) < r.PerTenant {
			short.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	})
	// The application's authentication, before the unit begins, so that
	// the tenant is in the context its setup reads.
	authenticate := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if tenant := req.Header.Get("X-Tenant"); tenant != "" {
				req = req.WithContext(context.WithValue(req.Context(), a.TenantKey, tenant))
			}
			next.ServeHTTP(w, req)
		})
	}
	h := a.Outside(authenticate(a.Inside(app)))

	const perTenant = 40 // requests of each tenant, half of them writes
	type call struct {
		method, tenant string
		want           int
	}
	var calls []call
	for i := range perTenant {
		for _, tenant := range Tenants {
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
			req := httptest.NewRequest(c.method, "/", nil).WithContext(Ctx(t))
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
		t.Errorf("%d reads saw fewer than their tenant's %d rows", n, r.PerTenant)
	}
	if n := ranWithoutTenant.Load(); n != 0 {
		t.Errorf("%d requests without a tenant got a transaction", n)
	}
	for _, tenant := range Tenants {
		n, err := a.Count(Ctx(t), r.Table, tenant)
		if err != nil {
			t.Fatal(err)
		}
		if want := r.PerTenant + perTenant/2; n != want {
			t.Errorf("tenant %s has %d rows, want %d", tenant, n, want)
		}
	}
}
