// Package rpcscope is the one implementation of the RPC interceptors
// (scopedgrpc, scopedconnect): their options, commit modes, the commit
// point, retries and default error handling, generic over the framework's
// status code type. The commit point is the guarantee both packages give,
// and one copy of it cannot drift from the other; each package keeps only
// its public names and its framework's glue.
//
// It is not for applications: see package bindings for why it is public.
package rpcscope

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/unithooks"
)

// Finish ends scope after the call's handler returned; commit says
// whether the caller's commit policy wants the handler's outcome
// committed. It returns nil when the call may end as the handler said,
// or the cause to give the caller's error handler, whose answer replaces
// the handler's outcome: endedEarly wrapping the context's error when the
// call ended before the commit point (and, after a hand commit, the
// sentinel of what it saved: see ended), or the commit error prefixed
// with pkg.
//
// With an after in ctx ([WithAfter]), the scope's hooks are left for
// [RunAfter], to run once the response has been sent.
func Finish(ctx context.Context, scope *scoped.Scope, commit bool, pkg string, endedEarly error) error {
	hold(ctx, scope)
	if !commit {
		_ = scope.Remove() // errors reach the sessions' teardown hooks
		return nil
	}
	if ctx.Err() != nil {
		// The client went away or the deadline passed (and the safety net
		// may have rolled back already): nothing is committed for a call
		// that no one waits for, and it does not end with success.
		held := scope.Committable() > 0 || errors.Is(scope.Err(), scoped.ErrScopeCancelled)
		_ = scope.Remove()
		return ended(scope, endedEarly, ctx.Err(), held)
	}
	if serr := scope.Err(); serr != nil {
		// The handler ended the scope itself: nothing left to decide. Its
		// end may still run on another goroutine; Remove waits for it, so
		// that its hooks are settled (held) before RunAfter looks.
		_ = scope.Remove()
		if errors.Is(serr, scoped.ErrScopeCancelled) {
			// Or the context ended just after the check above and the
			// safety net rolled the scope back: not the handler's doing,
			// and nothing was saved but by hand.
			return ended(scope, endedEarly, serr, true)
		}
		return nil
	}
	cerr := scope.Commit()
	if cerr == nil || savedAll(cerr) {
		return nil // committed; a close failing afterwards lost nothing
	}
	if serr := scope.Err(); errors.Is(cerr, scoped.ErrScopeClosed) && errors.Is(serr, scoped.ErrScopeCancelled) {
		// The safety net pre-empted the commit: rolled back.
		return ended(scope, endedEarly, serr, true)
	}
	return fmt.Errorf("%s: %w", pkg, cerr)
}

// ended is the cause of a call that ended before its commit point: what
// it had not committed was rolled back (held: it had some), but a session
// committed by hand (ScopedSession.Commit) is saved, or may be, and
// neither the client nor an error handler may be led to say that nothing
// was.
func ended(scope *scoped.Scope, endedEarly, cause error, held bool) error {
	err := fmt.Errorf("%w: %w", endedEarly, cause)
	switch {
	case unithooks.UnknownByHand(scope):
		return fmt.Errorf("%w, after a session's commit by hand of unknown outcome: %w", err, scoped.ErrCommitUnknown)
	case held && unithooks.SavedByHand(scope):
		return fmt.Errorf("%w, after a session was committed by hand: %w", err, scoped.ErrPartiallyCommitted)
	}
	return err
}

// savedAll reports whether a commit error says that everything was saved
// and only a close failed afterwards. After a failed hand commit the
// scope's outcome wraps ErrCommittedCloseFailed too, with ErrNotCommitted
// or ErrPartiallyCommitted: that work was lost, and the call is no success.
func savedAll(err error) bool {
	return errors.Is(err, scoped.ErrCommittedCloseFailed) &&
		!errors.Is(err, scoped.ErrNotCommitted) && !errors.Is(err, scoped.ErrPartiallyCommitted)
}
