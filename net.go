package scoped

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-scoped/scoped/internal/bound"
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
	var fb [2]*node
	s.mu.Lock()
	if s.ended() {
		s.mu.Unlock()
		return
	}
	fired := s.fireBounds(fb[:0], false) // a begin still running gives up first
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
		runBounds(fired)
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
		s.flags |= byNet
		s.mu.Unlock()
		runBounds(fired)
		_ = s.end(false)
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
		s.endPartial(false, holdsCommittable(nodes))
		if h := testHookNetFired.Load(); h != nil {
			(*h)(s)
		}
	}()
	runBounds(fired)
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

// The creation bound: a context, handed to adapters that ask for it (see
// internal/bound), that is done if the scope's safety net fires or the
// scope ends while the session's factory runs, and never after. It is the
// factory context under another type and is driven by the net's own
// registration, so a bounded begin costs no allocation of its own.

// creationBound is the bound's state, in the node being created. Guarded
// by the scope's mu.
type creationBound struct {
	state boundState
	byEnd bool          // fired by the scope's end rather than the net: Canceled, ErrScopeClosed
	done  chan struct{} // made by the first Done
	after func()        // registered by AfterFunc (database/sql's, once; more are chained)
}

type boundState uint8

const (
	boundIdle     boundState = iota // nobody asked for it
	boundWatching                   // done if the net fires or the scope ends
	boundFired                      // done
	boundSettled                    // never done
)

// boundContext is the bound as a context.
type boundContext node

var _ bound.Source = (*factoryContext)(nil)

// BoundCreation implements bound.Source: it arms the scope's safety net
// now, rather than once the session exists, so that the net watches the
// begin too.
func (c *factoryContext) BoundCreation() (bound.Context, bool) {
	s := c.scope
	if s.parent != nil || c.owner.noNet || s.parentCtx.Done() == nil {
		return nil, false
	}
	s.mu.Lock()
	b := &c.bound
	arm := false
	switch {
	case s.flags&noNet != 0:
		s.mu.Unlock()
		return nil, false
	case b.state == boundFired:
	case s.flags&netFired != 0:
		// The net ended part of the scope and will not run again: the
		// scope's context is done, and so is the bound.
		b.state = boundFired
	case s.ended():
		b.state, b.byEnd = boundFired, true
	default:
		b.state = boundWatching
		arm = s.flags&armed == 0
		s.flags |= armed
	}
	s.mu.Unlock()
	if arm {
		s.arm()
	}
	return (*boundContext)(c), true
}

// fireBounds marks the watching bounds of s's creations fired and returns
// their nodes, for runBounds once the caller has released s.mu. Under s.mu.
func (s *Scope) fireBounds(buf []*node, byEnd bool) []*node {
	for c := s.creating; c != nil; c = c.next {
		if b := &c.n.bound; b.state == boundWatching {
			b.state, b.byEnd = boundFired, byEnd
			buf = append(buf, c.n)
		}
	}
	return buf
}

// runBounds closes the channels of fired bounds and runs what was
// registered with them. No lock is held: database/sql's callbacks take
// their own.
func runBounds(fired []*node) {
	for _, n := range fired {
		s := n.scope
		s.mu.Lock()
		b := &n.bound
		if b.done == nil {
			b.done = closedChan
		} else if b.done != closedChan {
			close(b.done)
			b.done = closedChan
		}
		after := b.after
		b.after = nil
		s.mu.Unlock()
		if after != nil {
			after()
		}
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// settleBound ends n's bound when its creation has finished, whether or
// not the factory settled it. Under the scope's mu.
func (n *node) settleBound() {
	if b := &n.bound; b.state == boundWatching {
		b.state = boundSettled
		b.after = nil
	}
}

// errs returns what a fired bound's Err and Settle say.
func (c *boundContext) errs() (err, cause error) {
	if c.bound.byEnd {
		return context.Canceled, ErrScopeClosed
	}
	ctx := c.scope.parentCtx
	return ctx.Err(), context.Cause(ctx)
}

func (c *boundContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *boundContext) Value(key any) any           { return (*factoryContext)(c).Value(key) }
func (c *boundContext) String() string {
	return fmt.Sprint((*factoryContext)(c)) + ".WithCreationBound"
}

func (c *boundContext) Done() <-chan struct{} {
	s := c.scope
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &c.bound
	if b.done == nil {
		if b.state == boundFired {
			b.done = closedChan
		} else {
			b.done = make(chan struct{})
		}
	}
	return b.done
}

func (c *boundContext) Err() error {
	s := c.scope
	s.mu.Lock()
	fired := c.bound.state == boundFired
	s.mu.Unlock()
	if !fired {
		return nil
	}
	err, _ := c.errs() // outside mu: the caller's context
	return err
}

// AfterFunc makes the bound an afterFuncer (context's optional
// interface), so that database/sql's WithCancel of it registers here
// instead of starting a goroutine. Its stop always reports true: context
// calls it when the transaction's own context ends, after the begin, and
// from then on nothing registered here runs.
func (c *boundContext) AfterFunc(f func()) func() bool {
	s := c.scope
	s.mu.Lock()
	b := &c.bound
	switch b.state {
	case boundFired:
		s.mu.Unlock()
		go f()
		return stopped
	case boundWatching:
		if prev := b.after; prev == nil {
			b.after = f
		} else {
			b.after = func() { prev(); f() }
		}
	}
	s.mu.Unlock()
	return stopped
}

func stopped() bool { return true }

// Settle implements bound.Context.
func (c *boundContext) Settle() error {
	s := c.scope
	s.mu.Lock()
	fired := c.bound.state == boundFired
	if !fired {
		(*node)(c).settleBound()
	}
	s.mu.Unlock()
	if !fired {
		return nil
	}
	_, cause := c.errs()
	return cause
}
