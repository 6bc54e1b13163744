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
	shared    bool                  // a child's share of its ancestor's session: nothing to end
	openChild atomic.Bool           // a child scope holds a nested part of this session
	poisoned  atomic.Pointer[error] // a savepoint operation in this transaction failed: it must not commit
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
	n.settleBound()
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
	if !n.owner.noNet && !n.shared && !s.noNet {
		// The net is registered once the scope holds something it may end.
		s.netHeld = true
		arm = !s.armed
		s.armed = true
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
	n.settleBound()
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
	switch {
	case err != nil:
		return err
	case s != nil:
		end := endRemove
		if commit {
			end = endCommit
		}
		return endAt(ctx, scopePlace{s: s, o: &r.owner, end: end}, r.name, commit)
	}
	return endAt(ctx, keyPlace{k: &r.keyed, key: key, ctx: ctx}, r.name, commit)
}

// A place is where one session of one ScopedSession lives, or will: its
// node in a scope's list, or one key of the keyed store. Current and the
// ends of one session find it through lookup, whichever store it is in.
type place interface {
	lock()
	unlock()
	get() *node   // the node, in any state, or nil; under the lock
	check() error // why nothing may be looked up now; under the lock
	take(n *node) // removes n, which is ready; under the lock
	endContext() context.Context
}

// lookup waits until p holds no session still being created. It returns
// the ready node, or nil for none, with p locked; or an error with p
// unlocked: a re-entrant wait, ctx's end, or a creation that failed
// (wrapped, see unfailed).
func lookup[P place](ctx context.Context, p P, name string) (*node, error) {
	for {
		p.lock()
		if err := p.check(); err != nil {
			p.unlock()
			return nil, err
		}
		n := p.get()
		if n == nil || n.state.Load() == stateReady {
			return n, nil
		}
		if creating(ctx, n) {
			p.unlock()
			return nil, errOwnSession(name)
		}
		done := n.waitChan()
		p.unlock()
		if err := await(ctx, done); err != nil {
			return nil, err
		}
		if n.state.Load() == stateFailed {
			return nil, failedCreation{n.err}
		}
	}
}

// failedCreation is the error of a creation another caller was waiting
// for: Current returns it as it is; an end finds nothing to end.
type failedCreation struct{ err error }

func (f failedCreation) Error() string { return f.err.Error() }

func unfailed(err error) error {
	if f, ok := err.(failedCreation); ok {
		return f.err
	}
	return err
}

// endAt ends the session at p, if there is one.
func endAt[P place](ctx context.Context, p P, name string, commit bool) error {
	n, err := lookup(ctx, p, name)
	if _, failed := err.(failedCreation); failed {
		return nil // nothing was created: nothing to end
	}
	if err != nil {
		return err
	}
	if n == nil {
		p.unlock()
		return nil
	}
	p.take(n)
	p.unlock()
	return classify(n.self.end(p.endContext(), commit), commit && n.self.committable(), n.commitFailed, false)
}

// What a lookup in a scope is for: the checks differ.
const (
	endNone   int8 = iota // Current
	endRemove             // ScopedSession.Remove: an ended scope has nothing to remove
	endCommit             // ScopedSession.Commit: an ended scope committed nothing
)

// scopePlace is the node of owner o in scope s.
type scopePlace struct {
	s   *Scope
	o   *owner
	end int8
}

func (p scopePlace) lock()                       { p.s.mu.Lock() }
func (p scopePlace) unlock()                     { p.s.mu.Unlock() }
func (p scopePlace) get() *node                  { return p.s.find(p.o) }
func (p scopePlace) take(n *node)                { p.s.unlink(n) }
func (p scopePlace) endContext() context.Context { return p.s.teardownContext() }

func (p scopePlace) check() error {
	switch {
	case p.end == endRemove || !p.s.ended.Load() && p.end == endNone:
		return nil
	case p.s.ended.Load():
		// For Commit: whatever the session held was rolled back with its
		// scope, and nil would claim a commit that did not happen.
		return ErrScopeClosed
	case p.s.netFired && !p.o.noNet:
		return errNetFired(p.s)
	}
	return nil
}

// keyPlace is one key of a keyed store.
type keyPlace struct {
	k   *keyedStore
	key any
	ctx context.Context // of the caller: its values end the session
}

func (p keyPlace) lock()                       { p.k.mu.Lock() }
func (p keyPlace) unlock()                     { p.k.mu.Unlock() }
func (p keyPlace) get() *node                  { return p.k.m[p.key] }
func (p keyPlace) check() error                { return nil }
func (p keyPlace) take(*node)                  { delete(p.k.m, p.key) }
func (p keyPlace) endContext() context.Context { return context.WithoutCancel(p.ctx) }
