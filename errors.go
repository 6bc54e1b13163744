package scoped

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors, matched with [errors.Is]. Errors returned by this package
// wrap them (and the underlying cause, where there is one) with %w.
var (
	// ErrNoScope is returned by Current outside any scope: the context
	// carries no [Scope] (see [Begin]) or the [ScopeFunc] found no key.
	ErrNoScope = errors.New("scoped: no scope in context (call scoped.Begin or use the scopedhttp middleware)")

	// ErrScopeClosed is returned by Current in a scope that has ended:
	// removed, committed, or rolled back by its safety net (then also
	// wrapping [ErrScopeCancelled] and the context's cause). A session is
	// never silently re-created for a scope that has ended: it would never
	// be torn down.
	ErrScopeClosed = errors.New("scoped: scope already removed")

	// ErrClosed is returned by Current after [ScopedSession.Close].
	ErrClosed = errors.New("scoped: scoped session closed")

	// ErrInvalidKey is returned when a [ScopeFunc] returns a key that
	// cannot be a map key (a slice, map or func, or a struct or array
	// holding one).
	ErrInvalidKey = errors.New("scoped: scope key is not comparable")

	// ErrFactoryPanicked is returned to callers that were waiting for a
	// session whose factory panicked (the caller that ran the factory
	// gets the panic itself).
	ErrFactoryPanicked = errors.New("scoped: session factory panicked")

	// ErrReentrant is returned instead of waiting for oneself: by Current
	// when a factory asks, directly or through another factory, for the
	// session it is creating, and by an end of a scope called from a
	// session's teardown (or an event or teardown-error hook run during
	// one) while that scope's end is in progress.
	ErrReentrant = errors.New("scoped: re-entrant call would wait for itself")

	// ErrScopeCancelled is wrapped, with [ErrScopeClosed] and the
	// context's cause, by [Scope.Err] and by the errors of a scope whose
	// safety net rolled it back because its context ended (Current,
	// ScopedSession.Commit and Remove in it included): its work was not
	// saved by the scope.
	ErrScopeCancelled = errors.New("scoped: scope rolled back because its context ended")

	// ErrTeardownTimeout is returned when ending a session took longer than
	// the bound set by [WithTeardownTimeout].
	ErrTeardownTimeout = errors.New("scoped: session teardown timed out")
)

// ErrNotBound is returned by the package-level [Current] when no
// ScopedSession of that session type is bound to the context.
var ErrNotBound = errors.New("scoped: no ScopedSession bound for this session type (use scoped.Bind or scopedhttp.Bind)")

// The outcome of a failed commit, matched with [errors.Is] on the error of
// [Scope.Commit] or [ScopedSession.Commit]. A commit error wraps one of
// the first three, except when the first commit that failed may have
// landed: then it wraps [ErrCommitUnknown] instead of [ErrNotCommitted]
// (after other sessions committed, [ErrPartiallyCommitted] and
// ErrCommitUnknown may come together).
var (
	// ErrNotCommitted: a commit failed and no session of the scope had
	// committed before it: nothing was saved.
	ErrNotCommitted = errors.New("scoped: commit failed, nothing was committed")

	// ErrPartiallyCommitted: a commit failed after other sessions of the
	// same scope had committed (by this commit, or before it by hand with
	// [ScopedSession.Commit]): some changes were saved, some were not.
	ErrPartiallyCommitted = errors.New("scoped: commit failed after other sessions committed")

	// ErrCommittedCloseFailed: every commit succeeded, hand commits
	// ([ScopedSession.Commit]) included, but closing a session afterwards
	// failed. The changes were saved.
	ErrCommittedCloseFailed = errors.New("scoped: committed, but a session failed to close")

	// ErrCommitUnknown: the outcome of a commit is not known, as when the
	// connection was lost after COMMIT was sent: the changes may or may not
	// have been saved. Adapters wrap it into the commit errors they cannot
	// resolve.
	ErrCommitUnknown = errors.New("scoped: commit outcome unknown, the changes may have been saved")
)

// errNetFired is the error of a scope whose safety net rolled back its
// sessions, with the cause of the context whose end did: its own, or, for
// a child ended by an ancestor's net, the ancestor's.
func errNetFired(s *Scope) error {
	cause := error(context.Canceled)
	for c := s; c != nil; c = c.parent {
		if cc := context.Cause(c.parentCtx); cc != nil {
			cause = cc
			break
		}
	}
	return fmt.Errorf("%w: %w: %w", ErrScopeClosed, ErrScopeCancelled, cause)
}

// errOwnTeardown is returned by an end of a scope called from a session's
// teardown while the scope's end is in progress: it may be waiting for
// itself.
var errOwnTeardown = fmt.Errorf("%w: Remove or Commit called from a teardown while the scope's end is in progress", ErrReentrant)
