package scoped

import (
	"context"
	"fmt"
	"time"

	"github.com/go-scoped/scoped/internal/bound"
)

// The creation bound: a context, handed to adapters that ask for it (see
// internal/bound), that is done if the scope's safety net fires or the
// scope ends while the session's factory runs, and never after. It is the
// factory context under another type and is driven by the net's own
// registration, so a bounded begin costs no allocation of its own.

// creationBound is the bound's state, in the factory context of the node.
// Guarded by the scope's mu.
type creationBound struct {
	state boundState
	done  chan struct{} // made by the first Done
	err   error         // what Err says once fired
	cause error         // what Settle says once fired
	after func()        // registered by AfterFunc (database/sql's, once)
	more  []func()      // any further registrations
}

type boundState uint8

const (
	boundIdle     boundState = iota // nobody asked for it
	boundWatching                   // done if the net fires or the scope ends
	boundFired                      // done
	boundSettled                    // never done
)

// boundContext is the bound as a context.
type boundContext factoryContext

var _ bound.Source = (*factoryContext)(nil)

// BoundCreation implements bound.Source: it arms the scope's safety net
// now, rather than once the session exists, so that the net watches the
// begin too.
func (c *factoryContext) BoundCreation() (bound.Context, bool) {
	s := c.s
	if s == nil || s.parent != nil || c.n.owner.noNet || s.parentCtx.Done() == nil {
		return nil, false
	}
	s.mu.Lock()
	if s.noNet {
		s.mu.Unlock()
		return nil, false
	}
	if s.netFired {
		// The net ended part of the scope and will not run again: the
		// scope's context is done, and so is the bound.
		s.mu.Unlock()
		err, cause := s.parentCtx.Err(), context.Cause(s.parentCtx) // outside mu: the caller's context
		s.mu.Lock()
		if c.b.state != boundFired {
			c.b.fire(err, cause)
		}
	}
	b := &c.b
	ended := s.ended.Load()
	switch {
	case b.state == boundFired:
	case ended:
		b.fire(context.Canceled, ErrScopeClosed)
	default:
		b.state = boundWatching
	}
	arm := !s.armed && !ended
	s.armed = s.armed || arm
	s.mu.Unlock()
	if arm {
		s.arm()
	}
	return (*boundContext)(c), true
}

// fire marks a bound done. The caller holds the scope's mu. From then on
// Done and AfterFunc treat it as done; a bound that was watching may have
// handed out its channel and callbacks already, so whoever fired it calls
// runFired once it has released mu.
func (b *creationBound) fire(err, cause error) {
	b.state = boundFired
	b.err, b.cause = err, cause
}

// runFired closes the bound's channel and runs what was registered with it. The
// caller holds no lock: database/sql's callbacks take their own.
func (c *factoryContext) runFired() {
	s := c.s
	s.mu.Lock()
	b := &c.b
	if b.done == nil {
		b.done = closedChan
	} else if b.done != closedChan {
		close(b.done)
		b.done = closedChan
	}
	after, more := b.after, b.more
	b.after, b.more = nil, nil
	s.mu.Unlock()
	if after != nil {
		after()
	}
	for _, f := range more {
		f()
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// fireBounds marks the watching bounds of s's pending creations fired and
// returns them, to be run once the caller has released s.mu. The caller
// holds s.mu.
func (s *Scope) fireBounds(buf []*factoryContext, err, cause error) []*factoryContext {
	for n := s.head.Load(); n != nil; n = n.next.Load() {
		if n.state.Load() == statePending && n.fctx.b.state == boundWatching {
			n.fctx.b.fire(err, cause)
			buf = append(buf, &n.fctx)
		}
	}
	return buf
}

func runBounds(fired []*factoryContext) {
	for _, c := range fired {
		c.runFired()
	}
}

// settleBound ends n's bound when its creation has finished, whether or
// not the factory settled it. The caller holds the scope's mu.
func (n *node) settleBound() {
	if b := &n.fctx.b; b.state == boundWatching {
		b.state = boundSettled
		b.after, b.more = nil, nil
	}
}

func (c *boundContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *boundContext) Value(key any) any           { return (*factoryContext)(c).Value(key) }

func (c *boundContext) Done() <-chan struct{} {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &c.b
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
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.b.state == boundFired {
		return c.b.err
	}
	return nil
}

// AfterFunc makes the bound an afterFuncer (context's optional
// interface), so that database/sql's WithCancel of it registers here
// instead of starting a goroutine. Its stop always reports true: context
// calls it when the transaction's own context ends, after the begin, and
// from then on nothing registered here runs.
func (c *boundContext) AfterFunc(f func()) func() bool {
	s := c.s
	s.mu.Lock()
	b := &c.b
	switch b.state {
	case boundFired:
		s.mu.Unlock()
		go f()
		return stopped
	case boundWatching:
		if b.after == nil {
			b.after = f
		} else {
			b.more = append(b.more, f)
		}
	}
	s.mu.Unlock()
	return stopped
}

func stopped() bool { return true }

// Settle implements bound.Context.
func (c *boundContext) Settle() error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.b.state == boundFired {
		return c.b.cause
	}
	c.n.settleBound()
	return nil
}

func (c *boundContext) String() string {
	return fmt.Sprint(c.parent) + ".WithCreationBound"
}
