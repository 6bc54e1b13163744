package scopedtest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedtest"
)

// fakeTB records what CheckScopes reports instead of failing the test.
type fakeTB struct {
	testing.TB
	errs     []string
	cleanups []func()
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Errorf(format string, a ...any) {
	f.errs = append(f.errs, strings.TrimSpace(fmt.Sprintf(format, a...)))
}
func (f *fakeTB) end() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// CheckScopes fails a test that forgot a Remove, naming the line that
// began the scope, and passes one that ended everything.
func TestCheckScopesReportsAForgottenRemove(t *testing.T) {
	ft := &fakeTB{TB: t}
	scopedtest.CheckScopes(ft)
	_, scope := scoped.Begin(context.Background()) // forgotten
	ft.end()
	if len(ft.errs) != 1 || !strings.Contains(ft.errs[0], "leaks_test.go:") || !strings.Contains(ft.errs[0], "never ended") {
		t.Fatalf("reported %q, want the forgotten scope and its line", ft.errs)
	}
	_ = scope.Remove()

	ok := &fakeTB{TB: t}
	scopedtest.CheckScopes(ok)
	_ = scoped.Run(context.Background(), func(context.Context) error { return nil })
	ok.end()
	if len(ok.errs) != 0 {
		t.Fatalf("reported %q for a test that ended its scopes", ok.errs)
	}
}

// CheckScopesM fails the package run when a scope is left open.
func TestCheckScopesMFailsThePackage(t *testing.T) {
	var scope *scoped.Scope
	code := scopedtest.CheckScopesM(runFunc(func() int {
		_, scope = scoped.Begin(context.Background())
		return 0
	})).Run()
	_ = scope.Remove()
	if code != 1 {
		t.Fatalf("exit code %d for a leaked scope, want 1", code)
	}
	if code := scopedtest.CheckScopesM(runFunc(func() int { return 0 })).Run(); code != 0 {
		t.Fatalf("exit code %d without leaks, want 0", code)
	}
}

type runFunc func() int

func (f runFunc) Run() int { return f() }
