package scoped

import (
	"context"
	"fmt"
	"reflect"
	"time"
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

// Begin starts a scope and returns a context that carries it. Every
// session a [ScopedSession] creates for this context (or one derived from
// it) belongs to the scope and ends when the scope does:
//
//	ctx, scope := scoped.Begin(ctx)
//	defer scope.Remove()
//
// Begin in a context that already has a scope starts a child scope, a
// unit of work inside its parent's: it joins its ancestors' sessions
// rather than creating its own (a savepoint of the parent's transaction,
// see [WithNesting]), and ends at the latest when the parent does. A child
// begun after its parent ended is born ended (its Current returns
// [ErrScopeClosed]). For sessions of its own inside a scope use
// [BeginIndependent]; for work that outlives the scope, [Detach].
//
// Begin itself takes no connection and runs no factory.
func Begin(ctx context.Context) (context.Context, *Scope) {
	if ctx == nil {
		panic("scoped: Begin with nil context")
	}
	s := newScope(ctx, scopeFrom(ctx))
	return s.context(), s
}

// BeginIndependent starts a new root scope even inside a scope: an
// independent unit of work with sessions of its own (its own transaction,
// on its own connection), which ctx's scope neither joins nor ends. It
// keeps ctx's values and cancellation. Use it for work that must survive
// the enclosing unit's rollback, such as an audit row, and end it yourself.
func BeginIndependent(ctx context.Context) (context.Context, *Scope) {
	if ctx == nil {
		panic("scoped: BeginIndependent with nil context")
	}
	s := newScope(ctx, nil)
	return s.context(), s
}

// BeginWithoutSafetyNet is [Begin] for callers that always end the scope
// themselves, in the goroutine that uses its sessions, such as a
// middleware that defers Remove around the handler. It registers no
// safety net, so the scope's sessions are never ended on another goroutine
// while a query still runs on them (a pgx.Tx is not safe for that), and
// the scope costs less. A scope begun this way and never removed leaks.
func BeginWithoutSafetyNet(ctx context.Context) (context.Context, *Scope) {
	if ctx == nil {
		panic("scoped: BeginWithoutSafetyNet with nil context")
	}
	s := newScope(ctx, scopeFrom(ctx))
	s.noNet = true
	return s.context(), s
}

// Detach starts a new root scope for work that outlives ctx's scope, such
// as a goroutine started by a request handler. The new context has ctx's
// values but not its cancellation or deadline, and the new scope shares no
// session with ctx's scope. The goroutine must end it:
//
//	bg, scope := scoped.Detach(r.Context())
//	go func() {
//		defer scope.Remove()
//		// ... users.Current(bg) ...
//	}()
//
// Because the new context is never cancelled, the safety net of [Scope]
// does not apply: a detached scope that is never removed leaks its sessions.
func Detach(ctx context.Context) (context.Context, *Scope) {
	if ctx == nil {
		panic("scoped: Detach with nil context")
	}
	s := newScope(context.WithoutCancel(ctx), nil)
	return s.context(), s
}

// FromContext returns the innermost scope in ctx, if any.
func FromContext(ctx context.Context) (*Scope, bool) {
	s := scopeFrom(ctx)
	return s, s != nil
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

// scopeContext is the context Begin returns: the parent context plus the
// scope, without the allocation of a separate context.WithValue.
type scopeContext Scope

func (s *Scope) context() context.Context { return (*scopeContext)(s) }

func (c *scopeContext) Deadline() (time.Time, bool) { return c.parentCtx.Deadline() }
func (c *scopeContext) Done() <-chan struct{}       { return c.parentCtx.Done() }
func (c *scopeContext) Err() error                  { return c.parentCtx.Err() }
func (c *scopeContext) Value(key any) any {
	if _, ok := key.(scopeKey); ok {
		return (*Scope)(c)
	}
	return c.parentCtx.Value(key)
}
func (c *scopeContext) String() string { return fmt.Sprint(c.parentCtx) + ".WithScope" }

// teardownContext is what sessions are ended with: the scope's values,
// never cancelled, so that a cancelled request still rolls back cleanly.
type teardownContext Scope

func (s *Scope) teardownContext() context.Context { return (*teardownContext)(s) }

func (c *teardownContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *teardownContext) Done() <-chan struct{}       { return nil }
func (c *teardownContext) Err() error                  { return nil }
func (c *teardownContext) Value(key any) any           { return (*scopeContext)(c).Value(key) }
func (c *teardownContext) String() string {
	return fmt.Sprint(c.parentCtx) + ".WithScope.WithoutCancel"
}
