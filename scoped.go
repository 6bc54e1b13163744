package scoped

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"sync/atomic"
	"time"
)

// A ScopedSession hands out one session of type S per scope: the first
// [ScopedSession.Current] in a scope runs the factory, later calls in the
// same scope return the same session, and the session ends with the scope.
// It is the Go form of SQLAlchemy's scoped_session. Create it once, with
// [New], and share it; it is safe for concurrent use.
type ScopedSession[S any] struct {
	owner
	factory func(ctx context.Context) (S, error)
	td      teardown[S]
	nest    func(ctx context.Context, parent S) (Nested[S], error) // nil: child scopes share
}

// owner is the type-independent part of a ScopedSession. Its address
// identifies the ScopedSession in the scopes that hold its sessions, so
// two ScopedSessions never find each other's session.
type owner struct {
	name      string
	scopeFunc ScopeFunc // nil: ScopeToken, on the lock-free path
	noNet     bool      // WithoutSafetyNet
	hook      func(ctx context.Context, err error)
	events    func(ctx context.Context, e Event) // WithEventHook; nil: no clock readings
	timeout   time.Duration                      // WithTeardownTimeout; 0: none
	closed    atomic.Bool
	stats     sessionCounters
	keyed     keyedStore
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
	r.name = c.name
	if r.name == "" {
		r.name = reflect.TypeFor[S]().String()
	}
	r.scopeFunc = c.scopeFunc
	r.noNet = c.noNet
	r.hook = c.hook
	r.events = c.events
	r.timeout = max(c.timeout, 0)
	if !c.hookSet {
		r.hook = r.logTeardownError
	}
	return r
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

// String returns the name given by [WithName], or the session type.
func (r *ScopedSession[S]) String() string { return r.name }

// Stats returns the current counters of r's sessions.
func (r *ScopedSession[S]) Stats() Stats { return r.stats.snapshot() }

// Has reports whether ctx's scope (or key) already has a ready session.
// It never creates one.
func (r *ScopedSession[S]) Has(ctx context.Context) bool {
	key, s, err := r.key(ctx)
	if err != nil {
		return false
	}
	if s != nil {
		n := s.find(&r.owner)
		return n != nil && n.state.Load() == stateReady && !s.ended.Load()
	}
	r.keyed.mu.Lock()
	defer r.keyed.mu.Unlock()
	n := r.keyed.m[key]
	return n != nil && n.state.Load() == stateReady
}

// Remove ends ctx's session of r now, rolling it back and closing it, and
// returns the error of doing so. The scope stays open: a later Current
// creates a new session. Without a session Remove does nothing.
func (r *ScopedSession[S]) Remove(ctx context.Context) error { return r.endOne(ctx, false) }

// Commit commits ctx's session of r now and ends it, as a handler in
// [scopedhttp]'s Manual mode does. The scope stays open.
func (r *ScopedSession[S]) Commit(ctx context.Context) error { return r.endOne(ctx, true) }

// Close tears down every session r holds under a custom [ScopeFunc] key,
// newest first, and makes later Current calls return [ErrClosed]. Sessions
// held by scopes end with their scopes. Call it at shutdown, after the
// server has stopped serving.
func (r *ScopedSession[S]) Close() error {
	k := &r.keyed
	k.mu.Lock()
	r.closed.Store(true)
	k.closed = true
	nodes := make([]*node, 0, len(k.m))
	for key, n := range k.m {
		if n.state.Load() == stateReady {
			nodes = append(nodes, n)
			delete(k.m, key)
		}
	}
	k.mu.Unlock()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].seq > nodes[j].seq })
	var errs []error
	for _, n := range nodes {
		if err := n.self.end(context.Background(), false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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

func (o *owner) logTeardownError(ctx context.Context, err error) {
	slog.Default().ErrorContext(ctx, "scoped: session teardown failed", "session", o.name, "error", err)
}

// report passes a teardown error to the hook. A panicking hook must not
// stop the teardown of the sessions after this one, so its panic is
// logged, not propagated.
func (o *owner) report(ctx context.Context, err error) {
	if o.hook == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			slog.Default().ErrorContext(ctx, "scoped: teardown error hook panicked",
				"session", o.name, "panic", fmt.Sprint(p), "error", err)
		}
	}()
	o.hook(ctx, err)
}
