package rpcscope_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/rpcscope"
)

// code is a framework's status code, as the packages' codes.Code and
// connect.Code are.
type code int

const (
	ok code = iota
	failed
	internal
	deadline
	canceled
	aborted
)

type codeError struct {
	code code
	msg  string
}

func (e codeError) Error() string { return e.msg }

func codeOf(err error) code {
	var ce codeError
	switch {
	case err == nil:
		return ok
	case errors.As(err, &ce):
		return ce.code
	}
	return failed
}

var pkg = &rpcscope.Package[code]{
	Name:       "pkg",
	EndedEarly: errEndedEarly,
	Code:       codeOf,
	OK:         ok,
	Internal:   internal, DeadlineExceeded: deadline, Canceled: canceled, Aborted: aborted,
	NewError: func(c code, msg string) error { return codeError{c, msg} },
}

func config(opts ...rpcscope.Option[code]) *rpcscope.Config[code] {
	return rpcscope.NewConfig(pkg, pkg.DefaultErrorHandler, opts,
		func(o rpcscope.Option[code], c *rpcscope.Config[code]) { o(c) })
}

// panics returns what f panicked with, "" when it did not.
func panics(f func()) (msg string) {
	defer func() {
		if p := recover(); p != nil {
			msg = fmt.Sprint(p)
		}
	}()
	f()
	return ""
}

func TestOptionsRefuseWhatCannotWork(t *testing.T) {
	for name, f := range map[string]func(){
		"Retry(0)":          func() { pkg.Retry(0, func(error) bool { return true }) },
		"Retry(nil)":        func() { pkg.Retry(1, nil) },
		"CommitPolicy(nil)": func() { pkg.CommitPolicy(nil) },
		"ErrorHandler(nil)": func() { pkg.ErrorHandler(nil) },
		"Bind(nil)":         func() { rpcscope.Bind[code, *tx](pkg, nil) },
		"Mode(7)":           func() { pkg.Mode(7) },
		"Retry in Manual":   func() { config(pkg.Retry(2, func(error) bool { return true })) },
		"Retry after Manual": func() {
			config(pkg.CommitPolicy(func(code) bool { return true }), pkg.Mode(rpcscope.Manual), pkg.Retry(2, func(error) bool { return true }))
		},
	} {
		if msg := panics(f); !strings.HasPrefix(msg, "pkg: ") {
			t.Errorf("%s: panic = %q, want one with the package prefix", name, msg)
		}
	}
	if got := rpcscope.Mode(7).String(); got != "CommitMode(invalid)" {
		t.Errorf("Mode(7).String() = %q", got)
	}
}

// call runs one unary call of cfg whose handler takes a session of s and
// returns err, and returns the call's error.
func call(t *testing.T, cfg *rpcscope.Config[code], s *session, handlerErr func(run int) error) (runs int, err error) {
	t.Helper()
	r := scoped.New(func(context.Context) (*tx, error) { return &tx{}, nil },
		scoped.WithCommit(func(context.Context, *tx) error { s.committed++; return s.commitErr }),
		scoped.WithRollback(func(context.Context, *tx) error { s.rolledBack++; return nil }),
		scoped.WithTeardownErrorHook(nil))
	_, err = rpcscope.Unary(cfg, context.Background(), func(ctx context.Context) (string, error) {
		runs++
		if _, err := r.Current(ctx); err != nil {
			return "", err
		}
		return "resp", handlerErr(runs)
	})
	return runs, err
}

func none(int) error { return nil }

func TestAutocommitCommitsOnOK(t *testing.T) {
	var s session
	if _, err := call(t, config(pkg.Mode(rpcscope.Autocommit)), &s, none); err != nil {
		t.Fatal(err)
	}
	s.want(t, 1, 0)
	s = session{}
	if _, err := call(t, config(pkg.Mode(rpcscope.Autocommit)), &s, func(int) error { return codeError{failed, "no"} }); codeOf(err) != failed {
		t.Errorf("call = %v, want the handler's error", err)
	}
	s.want(t, 0, 1)
	s = session{}
	if _, err := call(t, config(), &s, none); err != nil {
		t.Fatal(err)
	}
	s.want(t, 0, 1) // Manual: the handler commits what it wants
}

// Under Retry the call runs again while an attempt fails with what the
// classifier accepts, up to the bound; a commit failing that way on the
// last run reaches the error handler with its message as it was, and the
// default handler answers Aborted.
func TestRetryAndTheDefaultErrorHandler(t *testing.T) {
	conflict := errors.New("conflict")
	isConflict := func(err error) bool { return errors.Is(err, conflict) }

	s := session{}
	runs, err := call(t, config(pkg.Mode(rpcscope.Autocommit), pkg.Retry(3, isConflict)), &s,
		func(run int) error {
			if run == 1 {
				return conflict
			}
			return nil
		})
	if err != nil || runs != 2 {
		t.Errorf("call = %v after %d runs, want nil after 2", err, runs)
	}
	s.want(t, 1, 1)

	s = session{commitErr: conflict}
	var got error
	runs, err = call(t, config(pkg.Mode(rpcscope.Autocommit), pkg.Retry(3, isConflict),
		pkg.ErrorHandler(func(ctx context.Context, err error) error { got = err; return pkg.DefaultErrorHandler(ctx, err) })), &s, none)
	if codeOf(err) != aborted || runs != 3 || s.committed != 3 {
		t.Errorf("call = %v after %d runs and %d commits, want aborted after 3", err, runs, s.committed)
	}
	if !errors.Is(got, conflict) || !strings.HasPrefix(got.Error(), "pkg: ") || !strings.HasSuffix(got.Error(), ": conflict") {
		t.Errorf("error handler got %q, want the commit error as Finish made it", got)
	}

	s = session{commitErr: conflict}
	if _, err = call(t, config(pkg.Mode(rpcscope.Autocommit)), &s, none); codeOf(err) != internal {
		t.Errorf("without Retry: call = %v, want internal (scopedsql.Retryable does not know the error)", err)
	}
}

func TestDefaultErrorHandlerOutcomes(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tt := range []struct {
		ctx  context.Context
		err  error
		code code
		msg  string
	}{
		{context.Background(), fmt.Errorf("%w: %w", scoped.ErrNotCommitted, errors.New("disk full")), internal, "not saved"},
		{context.Background(), fmt.Errorf("x: %w", scoped.ErrCommitUnknown), internal, "may have been saved"},
		{context.Background(), fmt.Errorf("x: %w", scoped.ErrPartiallyCommitted), internal, "part of the call's changes"},
		{context.Background(), fmt.Errorf("%w: %w", errEndedEarly, context.DeadlineExceeded), deadline, "ended before its commit point"},
		{cancelled, fmt.Errorf("%w: %w", errEndedEarly, context.Canceled), canceled, "ended before its commit point"},
	} {
		err := pkg.DefaultErrorHandler(tt.ctx, tt.err)
		if codeOf(err) != tt.code || !strings.HasPrefix(err.Error(), "pkg: ") || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("DefaultErrorHandler(%v) = %d %q, want %d containing %q", tt.err, codeOf(err), err, tt.code, tt.msg)
		}
	}
}
