package scoped

import (
	"context"
	"errors"
	"fmt"
)

// classify wraps the error of ending sessions with what it means for the
// work, so that callers (scopedhttp's answer, a job's retry) can tell a
// commit that failed from one that landed: see [ErrNotCommitted],
// [ErrPartiallyCommitted] and [ErrCommittedCloseFailed]. commitFailed says
// that a commit returned an error (or panicked); committedBefore, that
// another session of the same end had committed before it.
func classify(err error, commit, commitFailed, committedBefore bool) error {
	switch {
	case err == nil || !commit:
		return err
	case !commitFailed:
		return fmt.Errorf("%w: %w", ErrCommittedCloseFailed, err)
	case committedBefore:
		return fmt.Errorf("%w: %w", ErrPartiallyCommitted, err)
	case errors.Is(err, ErrCommitUnknown):
		// Not "nothing was committed": the commit may have landed.
		return err
	}
	return fmt.Errorf("%w: %w", ErrNotCommitted, err)
}

// errNetFired is the error of committing in a scope whose safety net has
// rolled back its sessions because its context was done.
func errNetFired(s *Scope) error {
	return fmt.Errorf("%w: %w: %w", ErrScopeClosed, ErrScopeCancelled, context.Cause(s.parentCtx))
}
