package scopedriver_test

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedtest"
	"go.uber.org/goleak"
)

// serverExamples need PostgreSQL. Tests skip without it, through dbtest;
// an example cannot, so TestMain skips these with -test.skip instead.
const serverExamples = "^(ExampleNewMiddleware|ExampleInsert)$"

func TestMain(m *testing.M) {
	// The crash tests re-execute this binary as a worker process that they
	// kill; it runs the worker instead of the tests.
	if mode := os.Getenv(workerModeEnv); mode != "" {
		os.Exit(workerProcess(mode))
	}
	if os.Getenv(outboxProcEnv) != "" {
		os.Exit(outboxProcess())
	}
	flag.Parse()
	if os.Getenv(dbtest.PostgresEnv) == "" && os.Getenv(dbtest.RequireEnv) == "" {
		skip := serverExamples
		if f := flag.Lookup("test.skip"); f != nil && f.Value.String() != "" {
			skip = "(?:" + f.Value.String() + ")|" + serverExamples
		}
		if err := flag.Set("test.skip", skip); err != nil {
			fmt.Fprintln(os.Stderr, "scopedriver tests:", err)
			os.Exit(2)
		}
		if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "scopedriver: skipping %s: set %s to run it\n", serverExamples, dbtest.PostgresEnv)
		}
	}
	goleak.VerifyTestMain(scopedtest.CheckScopesM(m))
}
