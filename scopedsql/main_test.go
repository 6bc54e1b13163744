package scopedsql_test

import (
	"testing"

	_ "github.com/go-sql-driver/mysql" // "mysql" driver for the integration tests
	_ "github.com/lib/pq"              // "postgres" driver for the integration tests
	"go.uber.org/goleak"

	"github.com/go-scoped/scoped/scopedtest"
)

// TestMain fails the package if any test leaves a goroutine behind, such
// as the connection opener of a *sql.DB that was never closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(scopedtest.CheckScopesM(m)) }
