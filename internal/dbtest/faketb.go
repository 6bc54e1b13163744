package dbtest

import (
	"fmt"
	"sync"
	"testing"
)

// FakeTB is a testing.TB for a test of what a helper does at its test's
// end (an isolated database, a leak check): the cleanups registered on it
// run when the test calls End, not when the real test ends, and its
// Errorf is recorded instead of failing the real test, so that the test
// can check what the helper reported. The rest goes to the embedded TB.
type FakeTB struct {
	testing.TB
	mu       sync.Mutex
	errs     []string
	cleanups []func()
}

func (f *FakeTB) Helper()           {}
func (f *FakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

// Errorf may be called from the goroutines a helper's cleanups start.
func (f *FakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

// End runs the cleanups, last first, as the test's end would, and returns
// the errors reported.
func (f *FakeTB) End() []string {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errs
}
