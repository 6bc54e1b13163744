package scopedtest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedtest"
)

// CheckScopes fails a test that forgot a Remove, naming the line that
// began the scope, and passes one that ended everything.
func TestCheckScopesReportsAForgottenRemove(t *testing.T) {
	ft := &dbtest.FakeTB{TB: t}
	scopedtest.CheckScopes(ft)
	_, scope := scoped.Begin(context.Background()) // forgotten
	errs := ft.End()
	if len(errs) != 1 || !strings.Contains(errs[0], "leaks_test.go:") || !strings.Contains(errs[0], "never ended") {
		t.Fatalf("reported %q, want the forgotten scope and its line", errs)
	}
	_ = scope.Remove()

	ok := &dbtest.FakeTB{TB: t}
	scopedtest.CheckScopes(ok)
	_ = scoped.Run(context.Background(), func(context.Context) error { return nil })
	if errs := ok.End(); len(errs) != 0 {
		t.Fatalf("reported %q for a test that ended its scopes", errs)
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
