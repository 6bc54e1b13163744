package scoped

import (
	"context"
	"sync/atomic"

	"github.com/go-scoped/scoped/shared/bound"
)

// The safety net: a scope whose context is cancelled before Remove is
// ended anyway, on the goroutine context.AfterFunc starts (see [Scope]).
// It costs one context.AfterFunc registration, made when the scope first
// holds a session the net may end, and nothing for a scope that holds
// none. The same registration bounds an adapter's begin (the creation
// bound, below), so that scopedsql's BeginTx needs no watch of its own.

// arm registers the safety net, once the scope has something to end.
// context.AfterFunc runs s.cancelled on a goroutine of its own, never here.
func (s *Scope) arm() {
	if s.parentCtx.Done() == nil {
		return // never cancelled: nothing to watch
	}
	stop := context.AfterFunc(s.parentCtx, s.cancelled)
	s.mu.Lock()
	keep := !s.ended()
	if keep {
		s.stop = stop
	}
	s.mu.Unlock()
	if !keep {
		stop()
	}
}

// cancelled is the safety net, run by context.AfterFunc when the scope's
// context is done before Remove. Its errors reach the teardown hooks. A
// scope holding a session created [WithoutSafetyNet] is not ended: the net
// rolls back the sessions that may be ended from another goroutine and
// leaves the others, and the scope, to Remove.
func (s *Scope) cancelled() {
	var fb [2]bound.Target
	s.mu.Lock()
	if s.ended() {
		s.mu.Unlock()
		return
	}
	fired := s.fireWatches(fb[:0], false) // a begin still running gives up first
	if s.flags&netHeld == 0 || s.sessions.Load() == nil && s.creating == nil {
		// Registered only to bound a begin, or every session the scope
		// held was ended by hand (ScopedSession.Commit or Remove) and none
		// is being created: the net finds nothing to end and changes no
		// outcome. The scope stays open, as if there had been no net; a
		// session created later registers it again (and it fires at once).
		held := s.flags&netHeld != 0
		// As if the scope had never held a session: a later registration
		// for a begin alone (the creation bound) must not end the scope.
		s.flags &^= armed | netHeld
		s.mu.Unlock()
		s.runWatches(fired, false)
		if h := testHookNetIdle.Load(); h != nil && held {
			(*h)(s)
		}
		return
	}
	unsafe := false
	for c := s.sessions.Load(); c != nil; c = c.next {
		unsafe = unsafe || c.n.owner.noNet
	}
	if !unsafe {
		s.flags |= netEnding
		s.mu.Unlock()
		s.runWatches(fired, false)
		_ = s.end(false, true)
		return
	}
	s.flags |= netFired
	var buf [8]*node
	nodes := s.drop(buf[:0], func(n *node) bool { return !n.owner.noNet })
	for _, n := range nodes {
		n.ended = true
	}
	s.beginPartial() // Remove waits for it, so that it returns with everything ended
	s.mu.Unlock()
	defer func() { // also if a teardown calls runtime.Goexit
		s.endPartial(false, holdsCommittable(nodes), false)
		if h := testHookNetFired.Load(); h != nil {
			(*h)(s)
		}
	}()
	s.runWatches(fired, false)
	for _, n := range nodes {
		_ = endNode(n, s.teardownContext(), false) // errors reach the hooks
	}
}

// testHookNetFired, set by tests only, sees a safety net that ended part
// of a scope once it has finished.
var testHookNetFired atomic.Pointer[func(*Scope)]

// testHookNetIdle, set by tests only, sees a safety net that found nothing
// to end in a scope that had held a session (not one registered only to
// bound a begin).
var testHookNetIdle atomic.Pointer[func(*Scope)]

// The creation bound: an adapter that ties a session to the context of
// its begin (scopedsql) bounds the begin by the scope's context through
// the net's own registration rather than one of its own (shared/bound).
// The bounded context is the adapter's; the core fires it if the net
// fires, or the scope ends, while the session's factory runs. Its state
// is in the node being created, under the scope's mu.

var _ bound.Watcher = (*factoryContext)(nil)

// Watch implements bound.Watcher: it arms the scope's safety net now,
// rather than once the session exists, so that the net watches the begin
// too.
func (c *factoryContext) Watch(t bound.Target) bool {
	s, n := c.scope, (*node)(c)
	if !c.Watches() {
		return false
	}
	s.mu.Lock()
	var now error // the begin's context is done already: its Err
	arm := false
	switch {
	case s.flags&noNet != 0 || n.watch != nil:
		// No net, or a begin of this creation is watched already: one
		// watch at a time, and the adapter watches a second begin itself.
		s.mu.Unlock()
		return false
	case s.flags&(netFired|byNet) != 0:
		// The net ended the scope, or part of it, and will not run again: the
		// scope's context is done, and so is the begin.
		n.fired, now = true, s.parentCtx.Err()
	case s.ended():
		n.fired, n.firedByEnd, now = true, true, context.Canceled
	default:
		n.watch = t
		arm = s.flags&armed == 0
		s.flags |= armed
	}
	s.mu.Unlock()
	if now != nil {
		t.Fire(now)
	} else if arm {
		s.arm()
	}
	return true
}

// Watches implements bound.Watcher: only a root scope's net watches a
// begin (a child's sessions are its ancestors'), and not that of a session
// WithoutSafetyNet, nor on a context that is never cancelled.
func (c *factoryContext) Watches() bool {
	return c.scope.parent == nil && !c.owner.noNet && c.scope.parentCtx.Done() != nil
}

// Unwatch implements bound.Watcher.
func (c *factoryContext) Unwatch() error {
	s := c.scope
	s.mu.Lock()
	defer s.mu.Unlock()
	c.watch = nil
	switch {
	case !c.fired:
		return nil
	case c.firedByEnd:
		return ErrScopeClosed
	}
	return context.Cause(s.parentCtx)
}

// fireWatches fires the watches of s's creations: the scope ended (byEnd)
// or its context did. It returns what to fire, for runWatches once the
// caller has released s.mu. Under s.mu.
func (s *Scope) fireWatches(buf []bound.Target, byEnd bool) []bound.Target {
	for c := s.creating; c != nil; c = c.next {
		if n := c.n; n.watch != nil {
			n.fired, n.firedByEnd = true, byEnd
			buf = append(buf, n.watch)
			n.watch = nil
		}
	}
	return buf
}

// runWatches fires the targets fireWatches returned, with no lock held:
// database/sql's callbacks take their own.
func (s *Scope) runWatches(fired []bound.Target, byEnd bool) {
	err := context.Canceled
	if !byEnd {
		err = s.parentCtx.Err()
	}
	for _, t := range fired {
		t.Fire(err)
	}
}
