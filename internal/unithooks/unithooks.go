// Package unithooks lets the owners of a unit of work in this module
// (scopedhttp, shared/rpcscope) run the unit's hooks (scoped.OnCommit,
// scoped.OnRollback) after they have answered, rather than when the
// scope ends, which is before the answer: a hook must never delay the
// client. Package scoped sets the functions; the scope is passed as any
// because scoped imports this package.
package unithooks

var (
	// Hold makes the end of the *scoped.Scope keep the hooks it decides
	// to run instead of running them. Call it before ending the scope,
	// and Run after answering, on every path.
	Hold func(scope any)
	// Run runs the hooks kept by a held scope's end, once; nothing if
	// there are none or the scope has not ended.
	Run func(scope any)
	// Pending reports whether a held scope's end kept hooks to run.
	Pending func(scope any) bool
	// SavedByHand reports whether a session of the scope was committed by
	// hand (ScopedSession.Commit): its owner must not run it again. It
	// waits for such a commit still running on another goroutine.
	SavedByHand func(scope any) bool
	// UnknownByHand reports whether a hand commit of the scope has an
	// unknown outcome (scoped.ErrCommitUnknown) and none is known to have
	// saved: "may have been saved", not "partially saved". It waits as
	// SavedByHand does.
	UnknownByHand func(scope any) bool
	// UncertainByHand reports whether a hand commit of the scope has an
	// unknown outcome, whatever other hand commits did. It waits as
	// SavedByHand does.
	UncertainByHand func(scope any) bool
	// LostByHand reports whether a hand commit of the scope failed (or
	// the safety net rolled back work to commit): that work is not saved.
	// It waits as SavedByHand does.
	LostByHand func(scope any) bool
)
