package scoped_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
)

var errConflict = errors.New("serialization failure")

func isConflict(err error) bool { return errors.Is(err, errConflict) }

// failingUnit is a service function that runs in its own unit of work with
// retries, and fails with a conflict the first fails times it is called.
func failingUnit(fails *int) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return scoped.Run(ctx, func(context.Context) error {
			if *fails > 0 {
				*fails--
				return errConflict
			}
			return nil
		}, scoped.WithRetry(3, isConflict))
	}
}

// A Run with WithRetry inside a root Run with WithRetry asks the root to
// run again, even when the code between them swallowed its error.
func TestNestedRunAsksItsRootToRetry(t *testing.T) {
	fails, runs := 2, 0
	unit := failingUnit(&fails)
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		runs++
		_ = unit(ctx) // swallowed: the root retries all the same
		return nil
	}, scoped.WithRetry(5, isConflict))
	if err != nil {
		t.Fatalf("Run = %v, want nil after the retries", err)
	}
	if runs != 3 {
		t.Errorf("the root ran %d times, want 3 (two conflicts, then success)", runs)
	}
}

// The root's attempts bound the retries a nested Run asks for.
func TestNestedRetryIsBoundedByTheRoot(t *testing.T) {
	fails, runs := 100, 0
	unit := failingUnit(&fails)
	err := scoped.Run(context.Background(), func(ctx context.Context) error {
		runs++
		return unit(ctx)
	}, scoped.WithRetry(4, isConflict))
	if !errors.Is(err, errConflict) {
		t.Fatalf("Run = %v, want the conflict after the last attempt", err)
	}
	if runs != 4 {
		t.Errorf("the root ran %d times, want 4", runs)
	}
}

func TestRetryRequested(t *testing.T) {
	ctx, root := scoped.Begin(context.Background())
	defer root.Remove()
	childCtx, child := scoped.Begin(ctx)
	defer child.Remove()
	if err := root.RetryRequested(); err != nil {
		t.Fatalf("RetryRequested before any failure = %v", err)
	}
	other := errors.New("not a conflict")
	_ = scoped.Run(childCtx, func(context.Context) error { return other }, scoped.WithRetry(3, isConflict))
	_ = scoped.Run(childCtx, func(context.Context) error { return errConflict }) // no WithRetry: asks nothing
	_ = scoped.Run(childCtx, func(context.Context) error { return errConflict }, scoped.WithRetry(1, isConflict))
	if err := root.RetryRequested(); err != nil {
		t.Fatalf("RetryRequested = %v, want nil: no Run asked", err)
	}
	_ = scoped.Run(childCtx, func(context.Context) error { return errConflict }, scoped.WithRetry(3, isConflict))
	for name, s := range map[string]*scoped.Scope{"root": root, "child": child} {
		if err := s.RetryRequested(); !errors.Is(err, errConflict) {
			t.Errorf("%s: RetryRequested = %v, want the conflict", name, err)
		}
	}
	// A unit that saved something is never run again, whatever the classifier says.
	ctx2, root2 := scoped.Begin(context.Background())
	defer root2.Remove()
	saved := errors.Join(errConflict, scoped.ErrPartiallyCommitted)
	_ = scoped.Run(ctx2, func(context.Context) error { return saved }, scoped.WithRetry(3, isConflict))
	if err := root2.RetryRequested(); err != nil {
		t.Errorf("RetryRequested after a partial commit = %v, want nil", err)
	}
}

// A nested Run that asks a root that cannot retry (scoped.Begin, a Run
// without WithRetry) is not silently ignored: a warning, once per call
// site.
func TestRetryAskedOfARootThatCannotRetryWarnsOncePerCallSite(t *testing.T) {
	scoped.ForgetRetryWarnings()
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(prev)

	fails := 1000
	unit := failingUnit(&fails)
	for range 3 {
		ctx, scope := scoped.Begin(context.Background())
		_ = unit(ctx)
		_ = scope.Remove()
		_ = scoped.Run(context.Background(), unit) // the same call site, under a Run without WithRetry
	}
	out := buf.String()
	if n := strings.Count(out, "level=WARN"); n != 1 {
		t.Fatalf("%d warnings, want 1 (one call site):\n%s", n, out)
	}
	for _, want := range []string{"nothing retries", "retryrequest_test.go:", "serialization failure"} {
		if !strings.Contains(out, want) {
			t.Errorf("warning %q lacks %q", out, want)
		}
	}

	// A root that read the request does not warn.
	buf.Reset()
	ctx, scope := scoped.Begin(context.Background())
	_ = scoped.Run(ctx, func(context.Context) error { return errConflict }, scoped.WithRetry(2, isConflict))
	if scope.RetryRequested() == nil {
		t.Fatal("RetryRequested = nil")
	}
	_ = scope.Remove()
	if buf.Len() != 0 {
		t.Errorf("a request that was read logged: %s", buf.String())
	}
}
