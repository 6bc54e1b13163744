package dbtest

import (
	"fmt"
	"net/url"
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
