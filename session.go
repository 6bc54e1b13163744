package scoped

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-scoped/scoped/shared/bound"
)

// A ScopedSession hands out one session of type S per scope: the first
// [ScopedSession.Current] in a scope runs the factory, later calls in the
// same scope return the same session, and the session ends with the scope.
// It is the Go form of SQLAlchemy's scoped_session. Create it once, with
// [New], and share it; it is safe for concurrent use.
type ScopedSession[S any] struct {
	owner   // first: an entry finds its ScopedSession from its owner (entry.r)
	factory func(ctx context.Context) (S, error)
	td      teardown[S]
	nest    func(ctx context.Context, parent S) (Nested[S], error) // nil: child scopes share
}

// owner is the type-independent part of a ScopedSession. Its address
// identifies the ScopedSession in the scopes that hold its sessions.
type owner struct {
	ends      ender // the ScopedSession itself, which knows S
	name      string
	scopeFunc ScopeFunc // nil: ScopeToken
	noNet     bool      // WithoutSafetyNet
	hook      func(ctx context.Context, err error)
	events    func(ctx context.Context, e Event) // nil: no clock readings
	timeout   time.Duration                      // WithTeardownTimeout; 0: none
	stats     counters
	keyed     keyedStore
}

// ender ends the sessions of one ScopedSession, given their nodes.
type ender interface {
	end(n *node, ctx context.Context, commit bool) error
	committable(n *node) bool
	setRoute(n *node, route func() string)
}

// node is the type-independent part of one session's entry: what a scope
// or the keyed store holds, from the moment its factory starts.
type node struct {
	owner *owner
	scope *Scope // the scope holding it; nil in the keyed store
	cell  link   // its cell in its scope's list of sessions, or of creations
	// While the factory runs, under the store's lock (net.go for watch):
	up    *node        // the creation whose factory asked for this one
	wait  *waiters     // made by the first caller that waits for the creation
	watch bound.Target // the adapter's begin, fired if the net or the scope's end cuts it short
	// ready: the session exists (under the store's lock). shared: a child's
	// share of its ancestor's session, nothing to end (set before ready).
	ready, shared bool
	// The watched begin was fired (under the store's lock), by the
	// scope's end rather than its context.
	fired, firedByEnd bool
	// Owned by whoever took the node out of its store to end it.
	ended, commitFailed bool
	tracked             bool        // recorded by a Tracker (keyed only); set before it is shared
	openChild           atomic.Bool // a child scope holds a nested part of this session
	// A savepoint operation in this transaction failed: it must not commit.
	poisoned atomic.Pointer[error]
}

// entry is one session of a ScopedSession[S]. node comes first: a *node
// of r is a pointer to its entry (entryOf).
type entry[S any] struct {
	node
	s     S
	extra *entryExtra[S] // nesting or events only
}

// entryExtra is what only some sessions need: a child scope's part of its
// ancestor's session (nest.go) and the event hook's identity (observe.go).
type entryExtra[S any] struct {
	nested     Nested[S]
	isNested   bool
	parentNode *node
	id         uint64
	born       time.Time
	route      func() string // ReportRoute
}

// r returns the ScopedSession of e: owner is its first field.
func (e *entry[S]) r() *ScopedSession[S] { return (*ScopedSession[S])(unsafe.Pointer(e.owner)) }

// entryOf returns the entry of n, which r's creation allocated as an
// entry[S] with n as its first field.
func entryOf[S any](n *node) *entry[S] { return (*entry[S])(unsafe.Pointer(n)) }

// waiters is a creation some caller waits for: done is closed when the
// factory has returned, and err then says whether it failed.
type waiters struct {
	done chan struct{}
	err  error
}

// New returns a ScopedSession whose sessions factory creates. The factory
// runs at most once per scope (and key), on first use, and receives the
// scope's context: the values, deadline and cancellation of the context
// given to [Begin], not those of the context given to Current, so that a
// session never ends with a shorter-lived context of one caller. Under a
// custom [ScopeFunc] the factory gets the caller's values without
// cancellation, since the session outlives the caller.
//
// How sessions end is detected from S once, here: Commit(ctx)/Rollback(ctx)
// (pgx.Tx), Commit()/Rollback() (*sql.Tx), Close() error (*sql.Conn,
// io.Closer) and Release() (*pgxpool.Conn); [WithCommit], [WithRollback]
// and [WithClose] override any of them. New panics if factory is nil or if
// S has no way to end and no option gives one.
func New[S any](factory func(ctx context.Context) (S, error), opts ...Option) *ScopedSession[S] {
	if factory == nil {
		panic("scoped: New with nil factory")
	}
	var c config
	for _, o := range opts {
		o.apply(&c)
	}
	def := defaultTeardown[S]()
	r := &ScopedSession[S]{
		factory: factory,
		td: teardown[S]{
			commit:   resolve(c.commit, def.commit),
			rollback: resolve(c.rollback, def.rollback),
			close:    resolve(c.close, def.close),
		},
	}
	r.nest = defaultNesting(r.td)
	if c.nest.set {
		f, ok := c.nest.fn.(func(context.Context, S) (Nested[S], error))
		if !ok {
			panic(fmt.Sprintf("scoped: %s given to a ScopedSession[%v]", c.nest.via, reflect.TypeFor[S]()))
		}
		r.nest = f
	}
	if r.td.rollback == nil && r.td.close == nil {
		panic(fmt.Sprintf("scoped: New: no way to end sessions of type %v: "+
			"give WithRollback or WithClose (and WithCommit to commit them)", reflect.TypeFor[S]()))
	}
	r.ends = r
	r.name = c.name
	if r.name == "" {
		r.name = reflect.TypeFor[S]().String()
	}
	r.scopeFunc, r.noNet, r.events, r.timeout = c.scopeFunc, c.noNet, c.events, max(c.timeout, 0)
	r.hook = c.hook
	if !c.hookSet {
		r.hook = r.logTeardownError
	}
	return r
}

// String returns the name given by [WithName], or the session type.
func (r *ScopedSession[S]) String() string { return r.name }

// Stats returns the current counters of r's sessions.
func (r *ScopedSession[S]) Stats() Stats { return r.stats.snapshot() }

// Current returns the session of ctx's scope, creating it with the factory
// on first use. Concurrent first calls in one scope run the factory once;
// the others wait for it (or for their ctx to be done). A factory error is
// returned wrapped, and a factory panic propagates to the caller that ran
// it; either way nothing stays registered and the next call tries again.
//
// Outside any scope Current returns [ErrNoScope]; in a scope that has
// ended, [ErrScopeClosed] (also wrapping [ErrScopeCancelled] and the
// context's cause when the safety net ended it); after
// [ScopedSession.Close], [ErrClosed].
func (r *ScopedSession[S]) Current(ctx context.Context) (S, error) {
	// The hot path: the scope's immutable list of sessions, no lock.
	if r.scopeFunc == nil {
		if s := scopeFrom(ctx); s != nil {
			if n := s.find(&r.owner); n != nil {
				return entryOf[S](n).s, nil
			}
			return r.currentInScope(ctx, s)
		}
	}
	return r.current(ctx)
}

// current is Current when the scope has no ready session of r, or r has a
// custom ScopeFunc.
func (r *ScopedSession[S]) current(ctx context.Context) (S, error) {
	key, s, err := r.key(ctx)
	switch {
	case err != nil:
		var zero S
		return zero, err
	case s != nil:
		return r.currentInScope(ctx, s)
	}
	return r.currentKeyed(ctx, key)
}

// currentInScope is Current when s has no session of r yet: wait for a
// creation in flight, or start one.
func (r *ScopedSession[S]) currentInScope(ctx context.Context, s *Scope) (S, error) {
	var zero S
	n, err := lookup(ctx, scopePlace{s: s, o: &r.owner})
	if err != nil {
		return zero, unfailed(err)
	}
	if n != nil {
		s.mu.Unlock()
		return entryOf[S](n).s, nil
	}
	// Nothing there: register the creation, still holding s.mu.
	switch {
	case !s.touch(): // ended without the lock since lookup's check
		err := s.closedErr()
		s.mu.Unlock()
		return zero, err
	case r.keyed.closed.Load():
		s.mu.Unlock()
		return zero, ErrClosed
	case s.flags&netFired != 0 && !r.noNet:
		s.mu.Unlock()
		return zero, errNetFired(s)
	}
	e := &entry[S]{}
	e.owner, e.scope = &r.owner, s
	e.up = creatingNode(ctx)
	s.startCreation(&e.node)
	s.mu.Unlock()
	return create(e, s.context(), s)
}

// store is where a creation settles: a scope, or a key of the keyed store.
type store interface {
	// publish makes n ready, unless the store closed meanwhile; then n is
	// dropped and the reason returned.
	publish(n *node) error
	// fail drops n after its factory failed or panicked.
	fail(n *node, err error)
}

// create runs the factory for e, which the caller registered in st, with
// parent as the factory context's parent, and settles e in st whatever
// happens: a factory error or panic unregisters it (the panic goes on to
// the caller), and a store that closed meanwhile gets the new session
// ended at once.
func create[S any, ST store](e *entry[S], parent context.Context, st ST) (s S, err error) {
	r := e.r()
	var ctx context.Context = (*factoryContext)(&e.node)
	if e.scope == nil {
		ctx = parent // the keyed store's keyedCreation
	}
	child := e.scope != nil && e.scope.parent != nil
	var start time.Time
	if r.events != nil {
		start = time.Now()
	}
	returned := false
	defer func() {
		if !returned {
			e.failed(ctx, st, fmt.Errorf("%w: %s", ErrFactoryPanicked, r.name), child, start)
		}
	}()
	if child {
		s, err = e.join(ctx, e.scope)
	} else {
		s, err = r.factory(ctx)
	}
	returned = true
	if err != nil {
		if !child {
			err = fmt.Errorf("scoped: create %s session: %w", r.name, err)
		}
		e.failed(ctx, st, err, child, start)
		var zero S
		return zero, err
	}
	e.s = s
	if !child {
		r.stats.created.Add(1)
	}
	if r.events != nil && !e.shared {
		x := e.extraState()
		x.id, x.born = sessionIDs.Add(1), time.Now()
		r.emit(ctx, Event{Kind: Created, ID: x.id, Nested: x.isNested, Start: start, Duration: x.born.Sub(start), Route: e.routeName()})
	}
	if perr := st.publish(&e.node); perr != nil {
		var zero S
		return zero, errors.Join(perr, endNode(&e.node, e.endContext(parent), false))
	}
	return s, nil
}

// failed settles a creation that returned no session.
func (e *entry[S]) failed(ctx context.Context, st store, err error, child bool, start time.Time) {
	r := e.r()
	if !child {
		r.stats.createFailed.Add(1)
	}
	st.fail(&e.node, err)
	if e.tracked {
		untrack(&e.node)
	}
	// A child's failure is its own only when its savepoint failed (join got
	// as far as nesting): its parent's failure was told by the parent.
	if nested := child && e.extra != nil && e.extra.parentNode != nil; r.events != nil && (!child || nested) {
		r.emit(ctx, Event{Kind: Failed, Nested: nested, Start: start, Duration: time.Since(start), Err: err, Route: e.routeName()})
	}
}

func (e *entry[S]) extraState() *entryExtra[S] {
	if e.extra == nil {
		e.extra = new(entryExtra[S])
	}
	return e.extra
}

// endContext is what e is ended with: the scope's values without its
// cancellation, or, in the keyed store, the factory's parent.
func (e *entry[S]) endContext(parent context.Context) context.Context {
	if e.scope != nil {
		return e.scope.teardownContext()
	}
	if c, ok := parent.(*keyedCreation); ok {
		return c.Context // without the creation's mark: the session exists
	}
	return parent
}

// Has reports whether ctx's scope (or key) already has a ready session.
// It never creates one.
func (r *ScopedSession[S]) Has(ctx context.Context) bool {
	key, s, err := r.key(ctx)
	switch {
	case err != nil:
		return false
	case s != nil:
		return s.find(&r.owner) != nil
	}
	return r.keyed.has(key)
}

// Remove ends ctx's session of r now, rolling it back and closing it, and
// returns the error of doing so. The scope stays open: a later Current
// creates a new session. Without a session Remove does nothing.
func (r *ScopedSession[S]) Remove(ctx context.Context) error { return r.endOne(ctx, false) }

// Commit commits ctx's session of r now and ends it, as a handler in
// [scopedhttp]'s Manual mode does. The scope stays open. A failed hand
// commit makes the unit's own commit [ErrNotCommitted] or
// [ErrPartiallyCommitted]; one of unknown outcome makes it
// [ErrCommitUnknown], and no retrying owner runs the unit again. A hand
// commit that fails after an earlier one of the unit saved says
// [ErrPartiallyCommitted], after one of unknown outcome [ErrCommitUnknown],
// never [ErrNotCommitted].
func (r *ScopedSession[S]) Commit(ctx context.Context) error { return r.endOne(ctx, true) }

// endOne is Remove and Commit: find the session (after its creation, if
// one is in flight), take it out of its store, end it.
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
		return endAt(ctx, r, scopePlace{s: s, o: &r.owner, end: end}, commit)
	}
	return endAt(ctx, r, keyPlace{k: &r.keyed, key: key, ctx: ctx, commit: commit}, commit)
}

// endAt ends the session at p, if there is one.
func endAt[S any, P place](ctx context.Context, r *ScopedSession[S], p P, commit bool) error {
	n, err := lookup(ctx, p)
	if f, failed := err.(failedCreation); failed {
		if commit && errors.Is(f.err, ErrClosed) {
			return ErrClosed // Close refused the session: nothing was committed
		}
		return nil // nothing was created: nothing to end
	}
	if err != nil {
		return err
	}
	if n == nil {
		p.unlock()
		return nil
	}
	savedBefore, unknownBefore := p.before()
	p.take(n)
	p.unlock()
	committable := commit && r.committable(n)
	saved, unknown := false, false
	// A commit asked for and not saved is work lost; a Remove by hand is
	// the caller's decision (also if a teardown calls runtime.Goexit). A
	// commit whose outcome is unknown may have saved: not lost, and the
	// unit must not run again.
	defer func() { p.ended(saved, committable && !saved && !unknown, unknown) }()
	raw := endNode(n, p.endContext(), commit)
	unknown = committable && n.commitFailed && errors.Is(raw, ErrCommitUnknown)
	saved = committable && !n.commitFailed
	// A failed commit is not "nothing was committed" when an earlier hand
	// commit of the unit saved, or may have (what Scope.Commit says too).
	err = classify(raw, committable, n.commitFailed, savedBefore)
	switch {
	case !committable || !n.commitFailed || !unknownBefore || unknown:
	case savedBefore:
		err = fmt.Errorf("%w: %w", errUnknownByHand, err)
	default:
		err = fmt.Errorf("%w: %w", errUnknownByHand, raw)
	}
	return err
}

// A place is where one session of one ScopedSession lives, or will: its
// node in a scope, or one key of the keyed store. Current and the ends of
// one session find it through lookup, whichever store it is in.
type place interface {
	lock()
	unlock()
	get() *node                      // the node, ready or being created, or nil; under the lock
	check() error                    // why nothing may be looked up now; under the lock
	take(n *node)                    // removes n, which is ready, to end it; under the lock
	before() (saved, unknown bool)   // what hand commits of the unit did so far; under the lock
	outer() context.Context          // whose leaving also ends a wait: an enclosing keyed creation's caller, or nil
	ended(saved, lost, unknown bool) // n, taken, has ended; saved: by a commit (unknown: maybe); lost: its work was not saved
	endContext() context.Context
}

// lookup waits until p holds no session still being created: the single
// flight of concurrent first calls. It returns the ready node, or nil for
// none, with p locked; or an error with p unlocked: a re-entrant wait
// (ctx belongs to the creation it would wait for), the end of ctx or of
// p.outer() (the caller of an enclosing keyed creation, whose factory's
// context has no cancellation), or a creation that failed (wrapped, see
// unfailed).
func lookup[P place](ctx context.Context, p P) (*node, error) {
	for {
		p.lock()
		if err := p.check(); err != nil {
			p.unlock()
			return nil, err
		}
		n := p.get()
		if n == nil || n.ready {
			return n, nil
		}
		if creating(ctx, n) {
			p.unlock()
			return nil, fmt.Errorf("%w: the factory of %s asked for its own session (directly or through another factory)", ErrReentrant, n.owner.name)
		}
		if n.wait == nil {
			n.wait = &waiters{done: make(chan struct{})}
		}
		w := n.wait
		p.unlock()
		outer := p.outer() // only for a wait: a hit need not walk ctx for it
		var outerDone <-chan struct{}
		if outer != nil {
			outerDone = outer.Done()
		}
		select {
		case <-w.done:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-outerDone:
			return nil, context.Cause(outer)
		}
		if _, left := w.err.(callerLeft); left {
			// The creator's caller left: create it here, unless this
			// caller left too.
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			if outer != nil && outer.Err() != nil {
				return nil, context.Cause(outer)
			}
			continue
		}
		if w.err != nil {
			return nil, failedCreation{w.err}
		}
	}
}

// settle records the end of n's creation and wakes its waiters. The caller
// holds the store's lock.
func (n *node) settle(err error) {
	n.ready = err == nil
	if n.wait != nil {
		n.wait.err = err
		close(n.wait.done)
		n.wait = nil
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

// factoryContext is the context a factory in a scope runs with: the
// scope's context, marked with the creation it belongs to, so that a
// factory asking for its own session is told (ErrReentrant) instead of
// waiting for itself. It is the node under another type: no allocation.
// (A keyed session's factory gets the mark from keyedCreation.)
type factoryContext node

type factoryKey struct{}

func (c *factoryContext) Deadline() (time.Time, bool) { return c.scope.parentCtx.Deadline() }
func (c *factoryContext) Done() <-chan struct{}       { return c.scope.parentCtx.Done() }
func (c *factoryContext) Err() error                  { return c.scope.parentCtx.Err() }
func (c *factoryContext) Value(key any) any {
	if _, ok := key.(factoryKey); ok {
		return (*node)(c)
	}
	return c.scope.context().Value(key)
}
func (c *factoryContext) String() string { return fmt.Sprint(c.scope.context()) + ".WithFactory" }

// creatingNode returns the creation whose factory ctx belongs to, if any.
func creatingNode(ctx context.Context) *node {
	n, _ := ctx.Value(factoryKey{}).(*node)
	return n
}

// creating reports whether ctx belongs to the creation of n, directly or
// through the factories it called.
func creating(ctx context.Context, n *node) bool {
	for f := creatingNode(ctx); f != nil; f = f.up {
		if f == n {
			return true
		}
	}
	return false
}

// Bind returns a context in which the package-level [Current] for session
// type S uses r. Each session type has its own slot: binding a
// ScopedSession[*sql.Tx] does not hide a bound ScopedSession[pgx.Tx]; a
// second Bind of the same type replaces the first for the derived context.
func Bind[S any](ctx context.Context, r *ScopedSession[S]) context.Context {
	if r == nil {
		panic("scoped: Bind with nil ScopedSession")
	}
	return context.WithValue(ctx, bindKey[S]{}, r)
}

// bindKey[S] is the slot of the ScopedSession[S] bound by Bind.
type bindKey[S any] struct{}

// Bound returns the ScopedSession[S] bound to ctx by [Bind], if any.
func Bound[S any](ctx context.Context) (*ScopedSession[S], bool) {
	r, ok := ctx.Value(bindKey[S]{}).(*ScopedSession[S])
	return r, ok
}

// Current returns the session of the ScopedSession[S] bound to ctx by
// [Bind], creating it on first use, as [ScopedSession.Current] does. It
// returns an error wrapping [ErrNotBound] when none is bound.
func Current[S any](ctx context.Context) (S, error) {
	r, ok := Bound[S](ctx)
	if !ok {
		var zero S
		return zero, fmt.Errorf("%w: %v", ErrNotBound, reflect.TypeFor[S]())
	}
	return r.Current(ctx)
}
