// Package unit tells this repository's adapters what became of a unit of
// work they own, where package scoped's exported API does not say.
//
// It is not for applications. It is public only because adapters such as
// scopedriver are modules of their own, and Go lets no module import
// another's internal packages; like every package of the root module it
// keeps its API within a major version, so that an integration module
// built against one version of the root builds against every later one.
package unit

import (
	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/unithooks"
)

// SavedByHand reports whether a session of s was committed by hand
// (ScopedSession.Commit). An owner that runs failed units again must not
// run s again: that part would be saved once per run. It waits for a hand
// commit still running on another goroutine, so ask after the handler has
// returned, before or after ending s.
func SavedByHand(s *scoped.Scope) bool { return unithooks.SavedByHand(s) }

// UnknownByHand reports whether a hand commit of s has an unknown outcome
// ([scoped.ErrCommitUnknown]: it may have landed) while none is known to
// have saved: tell "may have been saved", not "partially saved". It waits
// as SavedByHand does.
func UnknownByHand(s *scoped.Scope) bool { return unithooks.UnknownByHand(s) }

// UncertainByHand reports whether a hand commit of s has an unknown
// outcome, whatever other hand commits of s did: with LostByHand, what an
// owner that records the unit's success with the rest of its work
// (scopedriver's CompleteTx) must ask, since that record would say the
// whole unit was saved. It waits as SavedByHand does.
func UncertainByHand(s *scoped.Scope) bool { return unithooks.UncertainByHand(s) }

// LostByHand reports whether a hand commit of s failed (or the safety net
// rolled back work it was to commit): an owner that records the unit's
// success with the rest of its work (scopedriver's CompleteTx) must not.
// It waits as SavedByHand does.
func LostByHand(s *scoped.Scope) bool { return unithooks.LostByHand(s) }
