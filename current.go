package scoped

import (
	"context"
	"fmt"
	"reflect"
)

// scopeKey finds the innermost Scope in a context. Only scopeContext
// answers it, so the token is reachable through the context alone.
type scopeKey struct{}

// bindKey[S] is the slot of the ScopedSession[S] bound by Bind: one per
// session type, never shared between types.
type bindKey[S any] struct{}

func scopeFrom(ctx context.Context) *Scope {
	if c, ok := ctx.(*scopeContext); ok { // the common case: no layers above Begin's context
		return (*Scope)(c)
	}
	s, _ := ctx.Value(scopeKey{}).(*Scope)
	return s
}

// Current returns the session of ctx's scope, creating it with the factory
// on first use. Concurrent first calls in one scope run the factory once;
// the others wait for it (or for their ctx to be done). A factory error is
// returned wrapped, and a factory panic propagates to the caller that ran
// it; either way nothing stays registered and the next call tries again.
//
// Outside any scope Current returns [ErrNoScope]; in a scope that has
// ended, [ErrScopeClosed]; after [ScopedSession.Close], [ErrClosed].
func (r *ScopedSession[S]) Current(ctx context.Context) (S, error) {
	if r.scopeFunc == nil {
		if s := scopeFrom(ctx); s != nil {
			// The hot path: a scope that already has its session. No lock.
			if n := s.find(&r.owner); n != nil && n.state.Load() == stateReady && !s.ended.Load() {
				return n.self.(*entry[S]).s, nil
			}
			return r.currentInScope(ctx, s)
		}
		var zero S
		return zero, ErrNoScope
	}
	key, s, err := r.key(ctx)
	if err != nil {
		var zero S
		return zero, err
	}
	if s != nil {
		return r.currentInScope(ctx, s)
	}
	return r.currentKeyed(ctx, key)
}

// currentInScope is Current's slow path under the default ScopeFunc.
func (r *ScopedSession[S]) currentInScope(ctx context.Context, s *Scope) (S, error) {
	var zero S
	n, err := lookup(ctx, scopePlace{s: s, o: &r.owner}, r.name)
	if err != nil {
		return zero, unfailed(err)
	}
	if n != nil {
		s.mu.Unlock()
		return n.self.(*entry[S]).s, nil
	}
	// Nothing there: create, still holding s.mu.
	if r.closed.Load() {
		s.mu.Unlock()
		return zero, ErrClosed
	}
	if s.netFired && !r.noNet {
		s.mu.Unlock()
		return zero, errNetFired(s)
	}
	e := r.newEntry(uint32(s.stripe))
	s.link(&e.node)
	s.mu.Unlock()
	return e.create(ctx, s.context(), s.teardownContext(), s)
}

// currentKeyed is Current under a custom ScopeFunc key.
func (r *ScopedSession[S]) currentKeyed(ctx context.Context, key any) (S, error) {
	var zero S
	if s := scopeFrom(ctx); s != nil && s.ended.Load() {
		// A late caller from an ended scope must not create what no one ends.
		return zero, ErrScopeClosed
	}
	k := &r.keyed
	n, err := lookup(ctx, keyPlace{k: k, key: key}, r.name)
	if err != nil {
		return zero, unfailed(err)
	}
	if n != nil {
		k.mu.Unlock()
		return n.self.(*entry[S]).s, nil
	}
	// Nothing there: create, still holding k.mu.
	if k.closed {
		k.mu.Unlock()
		return zero, ErrClosed
	}
	if k.m == nil {
		k.m = make(map[any]*node)
	}
	e := r.newEntry(newStripe())
	e.key = key
	k.m[key] = &e.node
	k.mu.Unlock()
	e.tracked = track(&e.node, r.name)
	detached := context.WithoutCancel(ctx)
	return e.create(ctx, detached, detached, k)
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
