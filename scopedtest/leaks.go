package scopedtest

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
)

// leakGrace is how long a check waits for scopes that are ending on other
// goroutines (a safety net, a handler that has just answered) before it
// calls them leaks. It is a bound, never a timing assertion.
const leakGrace = 2 * time.Second

// CheckScopes fails t if a scope begun during the test is still open when
// the test ends, or a session under a custom ScopeFunc key is still held,
// naming the file:line that began each. It is the one-line check against
// the forgotten Remove that leaves a connection idle in transaction:
//
//	func TestSignup(t *testing.T) {
//		scopedtest.CheckScopes(t)
//		...
//	}
//
// Scopes are recorded process-wide, so a parallel test's scopes count too:
// use it in tests that do not run in parallel, or [CheckScopesM] for the
// whole package.
func CheckScopes(t testing.TB) {
	t.Helper()
	tr := scoped.Track()
	t.Cleanup(func() {
		defer tr.Stop()
		if leaks := waitOpen(tr); len(leaks) > 0 {
			t.Errorf("scopedtest: %s", describeLeaks(leaks))
		}
	})
}

// CheckScopesM wraps a package's testing.M so that the package fails when
// its tests leave a scope open or a keyed session held. It composes with
// goleak:
//
//	func TestMain(m *testing.M) {
//		goleak.VerifyTestMain(scopedtest.CheckScopesM(m))
//	}
//
// or, alone, os.Exit(scopedtest.CheckScopesM(m).Run()).
//
// A run with -test.bench checks nothing: tracking records the stack of
// every scope begun, which would be measured with the code under test.
func CheckScopesM(m interface{ Run() int }) interface{ Run() int } { return checkedM{m} }

type checkedM struct{ m interface{ Run() int } }

func (c checkedM) Run() int {
	if !flag.Parsed() {
		flag.Parse()
	}
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		return c.m.Run()
	}
	tr := scoped.Track()
	defer tr.Stop()
	code := c.m.Run()
	if leaks := waitOpen(tr); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "scopedtest: %s\n", describeLeaks(leaks))
		if code == 0 {
			code = 1
		}
	}
	return code
}

func waitOpen(tr *scoped.Tracker) []scoped.Leak {
	deadline := time.Now().Add(leakGrace)
	for {
		leaks := tr.Open()
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func describeLeaks(leaks []scoped.Leak) string {
	lines := make([]string, len(leaks))
	for i, l := range leaks {
		lines[i] = "  " + l.String()
	}
	return fmt.Sprintf("%d scope(s) or session(s) left open (end them with defer scope.Remove(), or use scoped.Run):\n%s",
		len(leaks), strings.Join(lines, "\n"))
}
