// Package testkit is the test kit the packages of this repository share:
// an ordered event log, a collector for error hooks, and bounded waits, so
// that no package's tests keep a copy of their own.
package testkit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// Bound is how long a test waits for something that must happen before it
// fails instead of hanging, long enough for a loaded CI machine and a real
// database server. It is never a timing assertion.
const Bound = 30 * time.Second

// Log records events ("commit a", "rollback b") in the order they
// happen, from any goroutine. A nil *Log records nothing.
type Log struct {
	mu     sync.Mutex
	events []string
}

// Add records one event, formatted as fmt.Sprintf does.
func (l *Log) Add(format string, args ...any) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf(format, args...))
}

// List returns the events so far.
func (l *Log) List() []string {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// Reset forgets the events so far.
func (l *Log) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = nil
}

// Index returns the position of event e, or -1.
func (l *Log) Index(e string) int { return slices.Index(l.List(), e) }

// Errors collects what an error hook (scoped.WithTeardownErrorHook) receives.
type Errors struct {
	mu   sync.Mutex
	errs []error
}

// Hook is the hook to install.
func (c *Errors) Hook(_ context.Context, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err)
}

// List returns the errors so far.
func (c *Errors) List() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.errs)
}

// WaitFor returns what ch delivers (or its closing), failing t if that
// does not happen within Bound.
func WaitFor[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(Bound):
		t.Fatalf("%s did not happen within %v", what, Bound)
		var zero T
		return zero
	}
}

// Eventually polls cond until it holds, failing t after Bound.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %v", what, Bound)
		}
		time.Sleep(time.Millisecond)
	}
}
