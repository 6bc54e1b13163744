package scoped

import (
	"context"
	"sync"
	"sync/atomic"
)

// The registry is where sessions live between their creation and their
// end: in the Scope that created them under the default ScopeFunc, or in
// the ScopedSession's keyed store under a custom one. Both hold nodes.

const (
	statePending int32 = iota // the factory is running
	stateReady                // the session is usable
	stateFailed               // creation failed; err says why
)

// node is the type-independent part of one session's entry.
type node struct {
	next  atomic.Pointer[node] // older sessions of the same scope
	owner *owner               // identifies the ScopedSession the session belongs to
	self  ender                // the *entry[S] that embeds this node
	state atomic.Int32

	// Guarded by the lock of the store holding the node.
	done chan struct{} // made by the first waiter, closed when state leaves pending
	err  error         // set before state becomes failed

	key    any    // keyed store only
	seq    uint64 // creation order: set when the factory returned, under the store's lock
	stripe uint32
	fctx   factoryContext // the context the factory runs with, see reentry.go
	// Nesting, see nest.go. shared is set before the node is published.
	shared    bool        // a child's share of its ancestor's session: nothing to end
	openChild atomic.Bool // a child scope holds a nested part of this session
	// Owned by the goroutine that took the node out of its store.
	ended        bool
	commitFailed bool // its commit returned an error or panicked
	tracked      bool // recorded by a leak tracker (keyed sessions only); set before it is shared
}

// ender ends one session.
type ender interface {
	end(ctx context.Context, commit bool) error
	committable() bool
}

// waitChan returns the channel closed when n's creation finishes. The
// caller holds the store's lock.
func (n *node) waitChan() chan struct{} {
	if n.done == nil {
		n.done = make(chan struct{})
	}
	return n.done
}

// settle records the end of n's creation and wakes its waiters. The caller
// holds the store's lock.
func (n *node) settle(err error) {
	n.err = err
	if err != nil {
		n.state.Store(stateFailed)
	} else {
		n.state.Store(stateReady)
	}
	if n.done != nil {
		close(n.done)
	}
}

// await waits for n's creation to finish, or for ctx to be done.
func await(ctx context.Context, done chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// store is the part of a registry that the factory runner settles into.
type store interface {
	// publish makes n ready, unless the store closed meanwhile; then n is
	// dropped and the reason returned.
	publish(n *node) error
	// fail drops n after its factory failed or panicked.
	fail(n *node, err error)
}

// find returns the node of o in s, in any state. Lock-free.
func (s *Scope) find(o *owner) *node {
	for n := s.head.Load(); n != nil; n = n.next.Load() {
		if n.owner == o {
			return n
		}
	}
	return nil
}

// link adds n as the newest node. The caller holds s.mu.
func (s *Scope) link(n *node) {
	n.next.Store(s.head.Load())
	s.head.Store(n)
}

// unlink removes n. The caller holds s.mu. Readers already at n still
// find their way on through n.next.
func (s *Scope) unlink(n *node) {
	if s.head.Load() == n {
		s.head.Store(n.next.Load())
		return
	}
	for p := s.head.Load(); p != nil; p = p.next.Load() {
		if p.next.Load() == n {
			p.next.Store(n.next.Load())
			return
		}
	}
}

func (s *Scope) publish(n *node) error {
	s.mu.Lock()
	if s.ended.Load() {
		s.unlink(n)
		n.settle(ErrScopeClosed)
		s.mu.Unlock()
		return ErrScopeClosed
	}
	// Order is the order of creation, not of the first call: a session
	// whose factory used another session of the scope is created after it,
	// so it ends before it and commits after it.
	s.seq++
	n.seq = s.seq
	n.settle(nil)
	arm := false
	if !n.owner.noNet && !n.shared && !s.noNet && !s.armed {
		// The net is registered once the scope holds something it may end.
		s.armed = true
		arm = true
	}
	s.mu.Unlock()
	if arm {
		s.arm() // outside s.mu: a context may be the caller's own type
	}
	return nil
}

func (s *Scope) fail(n *node, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unlink(n)
	n.settle(err)
}

// keyedStore holds the sessions of custom ScopeFunc keys.
type keyedStore struct {
	mu     sync.Mutex // guards the fields below and done/err of their nodes
	m      map[any]*node
	seq    uint64
	closed bool
}

func (k *keyedStore) publish(n *node) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		delete(k.m, n.key)
		n.settle(ErrClosed)
		return ErrClosed
	}
	k.seq++
	n.seq = k.seq
	n.settle(nil)
	return nil
}

func (k *keyedStore) fail(n *node, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, n.key)
	n.settle(err)
}

// endOne is ScopedSession.Remove and ScopedSession.Commit.
func (r *ScopedSession[S]) endOne(ctx context.Context, commit bool) error {
	key, s, err := r.key(ctx)
	if err != nil {
		return err
	}
	if s != nil {
		for {
			s.mu.Lock()
			if commit && (s.ended.Load() || s.netFired && !r.noNet) {
				// Whatever the session held was rolled back with its scope:
				// nil would claim a commit that did not happen.
				var err error = ErrScopeClosed
				if !s.ended.Load() {
					err = errNetFired(s)
				}
				s.mu.Unlock()
				return err
			}
			n := s.find(&r.owner)
			if n == nil {
				s.mu.Unlock()
				return nil
			}
			if n.state.Load() == stateReady {
				s.unlink(n)
				s.mu.Unlock()
				return classify(n.self.end(s.teardownContext(), commit), commit && n.self.committable(), n.commitFailed, false)
			}
			if creating(ctx, n) {
				s.mu.Unlock()
				return errOwnSession(r.name)
			}
			done := n.waitChan()
			s.mu.Unlock()
			if err := await(ctx, done); err != nil {
				return err
			}
		}
	}
	k := &r.keyed
	for {
		k.mu.Lock()
		n := k.m[key]
		if n == nil {
			k.mu.Unlock()
			return nil
		}
		if n.state.Load() == stateReady {
			delete(k.m, key)
			k.mu.Unlock()
			return classify(n.self.end(context.WithoutCancel(ctx), commit), commit && n.self.committable(), n.commitFailed, false)
		}
		if creating(ctx, n) {
			k.mu.Unlock()
			return errOwnSession(r.name)
		}
		done := n.waitChan()
		k.mu.Unlock()
		if err := await(ctx, done); err != nil {
			return err
		}
	}
}
