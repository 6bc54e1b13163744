package scoped

import (
	"context"
	"sync/atomic"
)

// The safety net: a scope whose context is cancelled before Remove is
// ended anyway, on the goroutine context.AfterFunc starts (see [Scope]).

// cancelled is the safety net, run by context.AfterFunc when the scope's
// context is done before Remove. Its errors reach the teardown hooks. A
// scope holding a session created [WithoutSafetyNet] is not ended: the net
// rolls back the sessions that may be ended from another goroutine and
// leaves the others, and the scope, to Remove.
func (s *Scope) cancelled() {
	err, cause := s.parentCtx.Err(), context.Cause(s.parentCtx) // outside mu: the caller's context
	var fb [2]*factoryContext
	s.mu.Lock()
	if s.ended.Load() {
		s.mu.Unlock()
		return
	}
	// A begin still running gives up first (creationbound.go).
	fired := s.fireBounds(fb[:0], err, cause)
	if !s.netHeld || s.head.Load() == nil {
		// Registered only to bound a begin, or every session the scope
		// held was ended by hand (ScopedSession.Commit or Remove): the
		// net finds nothing to end and changes no outcome. The scope
		// stays open, as if there had been no net; a session created
		// later registers it again (and it fires at once).
		held := s.netHeld
		s.armed = false
		s.mu.Unlock()
		runBounds(fired)
		if h := testHookNetIdle.Load(); h != nil && held {
			(*h)(s)
		}
		return
	}
	unsafe := false
	for n := s.head.Load(); n != nil; n = n.next.Load() {
		if n.owner.noNet {
			unsafe = true
			break
		}
	}
	if !unsafe {
		s.byNet = true
		s.mu.Unlock()
		runBounds(fired)
		_ = s.end(false)
		return
	}
	s.netFired = true
	var buf [8]*node
	nodes := buf[:0]
	for n := s.head.Load(); n != nil; n = n.next.Load() {
		if !n.owner.noNet && n.state.Load() == stateReady {
			nodes = append(nodes, n)
		}
	}
	for _, n := range nodes {
		s.unlink(n)
		n.ended = true
	}
	busy := make(chan struct{})
	s.netBusy = busy // Remove waits for it, so that it returns with everything ended
	s.mu.Unlock()
	runBounds(fired)
	sortNewestFirst(nodes)
	for _, n := range nodes {
		_ = n.self.end(s.teardownContext(), false) // errors reach the hooks
	}
	close(busy)
	if h := testHookNetFired.Load(); h != nil {
		(*h)(s)
	}
}

// testHookNetFired, set by tests only, sees a safety net that ended part
// of a scope once it has finished.
var testHookNetFired atomic.Pointer[func(*Scope)]

// testHookNetIdle, set by tests only, sees a safety net that found nothing
// to end in a scope that had held a session (not one registered only to
// bound a begin).
var testHookNetIdle atomic.Pointer[func(*Scope)]

// arm registers the safety net, once the scope has something to end.
// context.AfterFunc runs s.cancelled on a goroutine of its own, never here.
func (s *Scope) arm() {
	if s.parentCtx.Done() == nil {
		return // never cancelled: nothing to watch
	}
	stop := context.AfterFunc(s.parentCtx, s.cancelled)
	s.mu.Lock()
	keep := !s.ended.Load()
	if keep {
		s.stop = stop
	}
	s.mu.Unlock()
	if !keep {
		stop()
	}
}
