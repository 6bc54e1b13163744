package scopedriver_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The crash tests re-execute this binary as a worker process that they
	// kill; it runs the worker instead of the tests.
	if mode := os.Getenv(workerModeEnv); mode != "" {
		os.Exit(workerProcess(mode))
	}
	goleak.VerifyTestMain(m)
}
