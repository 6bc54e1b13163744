package scoped

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/go-scoped/scoped/shared/bound"
)

// A ScopeFunc maps a context to the key its session is stored under. ok is
// false when the context belongs to no scope, and Current then returns
// [ErrNoScope].
//
// The default, [ScopeToken], keys on the innermost [Scope] from [Begin]:
// the session is held by that scope and ends with it. Any other key
// (a request id, a tenant) may be shared by several concurrent scopes, so
// its session is never torn down by whichever scope happened to create it:
// it lives, shared, until [ScopedSession.Remove] is called with a context
// that maps to the same key, or until [ScopedSession.Close]. This is the
// rule of SQLAlchemy's scoped_session with a custom scopefunc. A ScopeFunc
// that returns a *[Scope] as its key gets the default behaviour.
//
// Keys must be comparable; a key that cannot be a map key (a slice, map or
// func) makes Current return [ErrInvalidKey].
type ScopeFunc func(ctx context.Context) (key any, ok bool)

// ScopeToken is the default [ScopeFunc]: the key is the innermost [Scope]
// in ctx, an opaque token that lives exactly as long as the scope.
func ScopeToken(ctx context.Context) (key any, ok bool) {
	if s := scopeFrom(ctx); s != nil {
		return s, true
	}
	return nil, false
}

// ContextValue returns a [ScopeFunc] that keys on ctx.Value(key), such as
// a request id or a tenant set by an upstream middleware. A context
// without the value (or with a nil one) is in no scope.
func ContextValue(key any) ScopeFunc {
	return func(ctx context.Context) (any, bool) {
		v := ctx.Value(key)
		return v, v != nil
	}
}

// key runs the ScopeFunc. A *Scope key (always, by default) is returned
// as s; any other key is checked for use as a map key.
func (r *ScopedSession[S]) key(ctx context.Context) (key any, s *Scope, err error) {
	if r.scopeFunc == nil {
		if s = scopeFrom(ctx); s == nil {
			return nil, nil, ErrNoScope
		}
		return s, s, nil
	}
	key, ok := r.scopeFunc(ctx)
	if !ok {
		return nil, nil, ErrNoScope
	}
	if s, ok := key.(*Scope); ok && s != nil {
		return s, s, nil
	}
	if err := checkKey(key); err != nil {
		return nil, nil, fmt.Errorf("%w: %T from the ScopeFunc of %s: %s", ErrInvalidKey, key, r.name, err)
	}
	return key, nil, nil
}

// checkKey rejects keys that cannot find their own map entry: those the
// runtime cannot hash or compare (slices, maps, funcs, and values holding
// them, directly, in an interface, or even in a zero-length array), and
// those not equal to themselves (NaN), which would create a session on
// every call that no Remove could find. It asks the runtime itself rather
// than package reflect, whose Comparable misses some of these cases.
func checkKey(key any) (err error) {
	if key == nil {
		return errors.New("nil key")
	}
	defer func() {
		if recover() != nil {
			err = errors.New("not comparable")
		}
	}()
	_ = map[any]struct{}(nil)[key] // panics for a key that cannot be hashed
	if key != key {                // panics for one that cannot be compared
		return errors.New("not equal to itself (NaN)")
	}
	return nil
}

// keyedStore holds the sessions of custom ScopeFunc keys.
type keyedStore struct {
	mu     sync.Mutex // guards m, seq, and the waiters of its nodes
	m      map[any]keyedSlot
	seq    uint64
	closed atomic.Bool // set under mu, by Close
}

type keyedSlot struct {
	n   *node
	seq uint64 // creation order, set when the factory returned
}

func (k *keyedStore) has(key any) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := k.m[key].n
	return n != nil && n.ready
}

// currentKeyed is Current under a custom ScopeFunc key.
func (r *ScopedSession[S]) currentKeyed(ctx context.Context, key any) (S, error) {
	var zero S
	if s := scopeFrom(ctx); s != nil && s.ended() {
		// A late caller from an ended scope must not create what no one ends.
		return zero, s.Err()
	}
	k := &r.keyed
	p := keyPlace{k: k, key: key, ctx: ctx}
	n, err := lookup(ctx, p)
	if err != nil {
		return zero, unfailed(err)
	}
	if n != nil {
		k.mu.Unlock()
		return entryOf[S](n).s, nil
	}
	if k.closed.Load() {
		k.mu.Unlock()
		return zero, ErrClosed
	}
	if k.m == nil {
		k.m = make(map[any]keyedSlot)
	}
	e := &entry[S]{}
	e.owner = &r.owner
	e.up = creatingNode(ctx)
	k.m[key] = keyedSlot{n: &e.node}
	k.mu.Unlock()
	e.tracked = track(&e.node, r.name)
	// Asked from another keyed factory, whose context has no cancellation:
	// the begin is bounded by that creation's caller instead.
	p.caller = ctx
	if outer := p.outer(); outer != nil && ctx.Done() == nil {
		p.caller = outer
	}
	return create(e, &keyedCreation{Context: context.WithoutCancel(ctx), n: &e.node, caller: p.caller}, p)
}

// keyedCreation is the context a keyed session's factory runs with: the
// caller's values without its cancellation, since the session outlives
// the caller, marked with the creation (factoryKey). It bounds an
// adapter's begin by the caller's context (shared/bound), as a scope's
// safety net bounds a scope's: a caller that leaves while the begin waits
// for a pooled connection is not held until one frees.
type keyedCreation struct {
	context.Context
	n      *node
	caller context.Context
	stop   func() bool // the watch of the begin in progress; the factory's goroutine only
}

var _ bound.Watcher = (*keyedCreation)(nil)

// keyedCallerKey finds the caller of the keyed creation a context belongs
// to, if any.
type keyedCallerKey struct{}

func (c *keyedCreation) Value(key any) any {
	switch key.(type) {
	case factoryKey:
		return c.n
	case keyedCallerKey:
		return c.caller
	}
	return c.Context.Value(key)
}

func (c *keyedCreation) Watches() bool { return c.caller.Done() != nil }

func (c *keyedCreation) Watch(t bound.Target) bool {
	if !c.Watches() || c.stop != nil { // one watch at a time
		return false
	}
	c.stop = context.AfterFunc(c.caller, func() { t.Fire(c.caller.Err()) })
	return true
}

func (c *keyedCreation) Unwatch() error {
	stop := c.stop
	c.stop = nil
	if stop == nil || stop() {
		return nil
	}
	return context.Cause(c.caller)
}

// Close tears down every session r holds under a custom [ScopeFunc] key,
// newest first, and makes later Current calls return [ErrClosed]. Sessions
// held by scopes end with their scopes. A session whose factory is still
// running when Close is called, or that a Remove or Commit already took,
// is ended by that caller, possibly after Close has returned. Call it at
// shutdown, after the server has stopped serving.
func (r *ScopedSession[S]) Close() error {
	k := &r.keyed
	k.mu.Lock()
	k.closed.Store(true)
	slots := make([]keyedSlot, 0, len(k.m))
	for key, sl := range k.m {
		if sl.n.ready {
			slots = append(slots, sl)
			delete(k.m, key)
		}
	}
	k.mu.Unlock()
	sort.Slice(slots, func(i, j int) bool { return slots[i].seq > slots[j].seq })
	var errs []error
	for _, sl := range slots {
		if err := endNode(sl.n, context.Background(), false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// keyPlace is one key of a keyed store: a place for lookup, and the store
// its creation settles in.
type keyPlace struct {
	k      *keyedStore
	key    any
	ctx    context.Context // of the caller: its values end the session
	caller context.Context // of a creation: whose leaving cuts it short (ctx, or outer's)
	commit bool            // for ScopedSession.Commit
}

func (p keyPlace) lock()      { p.k.mu.Lock() }
func (p keyPlace) unlock()    { p.k.mu.Unlock() }
func (p keyPlace) get() *node { return p.k.m[p.key].n }
func (p keyPlace) check() error {
	if p.commit && p.k.closed.Load() {
		return ErrClosed // its session, if it had one, was rolled back by Close
	}
	return nil
}
func (p keyPlace) take(*node) { delete(p.k.m, p.key) }
func (p keyPlace) outer() context.Context {
	o, _ := p.ctx.Value(keyedCallerKey{}).(context.Context)
	return o
}
func (p keyPlace) ended(bool, bool, bool)      {}
func (p keyPlace) before() (bool, bool)        { return false, false }
func (p keyPlace) endContext() context.Context { return context.WithoutCancel(p.ctx) }

func (p keyPlace) publish(n *node) error {
	k := p.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed.Load() {
		delete(k.m, p.key)
		n.settle(ErrClosed)
		return ErrClosed
	}
	k.seq++
	k.m[p.key] = keyedSlot{n: n, seq: k.seq}
	n.settle(nil)
	return nil
}

func (p keyPlace) fail(n *node, err error) {
	k := p.k
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, p.key)
	if p.caller.Err() != nil {
		// The creator's caller left (its begin was cut short for it): a
		// caller waiting with a context of its own creates the session
		// itself rather than fail for someone else's leaving.
		err = callerLeft{err}
	}
	n.settle(err)
}

// callerLeft is the failure of a keyed creation whose caller's context
// ended: lookup has its waiters try again.
type callerLeft struct{ error }
