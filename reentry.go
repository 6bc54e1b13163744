package scoped

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"time"
)

// Re-entrancy: code that waits for a session's creation, or for a scope's
// teardown, from inside that very creation or teardown would wait for
// itself forever. Both cases end in ErrReentrant instead.

// factoryContext is the context a factory runs with: the context it would
// otherwise get (parent), plus which session is being created and which
// creation, if any, asked for it. It lives in the session's node, so it
// costs no allocation.
type factoryContext struct {
	parent context.Context
	n      *node           // the session being created
	up     *factoryContext // the creation whose factory asked for this one, if any
	s      *Scope          // the scope creating it; nil in the keyed store
	b      creationBound   // see creationbound.go
}

type factoryKey struct{}

// factoryContext returns n's factory context over parent, linked to the
// creation that ctx (the caller's context) belongs to, if any.
func (n *node) factoryContext(parent, caller context.Context, s *Scope) context.Context {
	n.fctx.parent = parent
	n.fctx.n = n
	n.fctx.s = s
	n.fctx.up, _ = caller.Value(factoryKey{}).(*factoryContext)
	return &n.fctx
}

// creating reports whether ctx belongs to the creation of n, directly or
// through the factories it called.
func creating(ctx context.Context, n *node) bool {
	f, _ := ctx.Value(factoryKey{}).(*factoryContext)
	for ; f != nil; f = f.up {
		if f.n == n {
			return true
		}
	}
	return false
}

func (c *factoryContext) Deadline() (time.Time, bool) { return c.parent.Deadline() }
func (c *factoryContext) Done() <-chan struct{}       { return c.parent.Done() }
func (c *factoryContext) Err() error                  { return c.parent.Err() }
func (c *factoryContext) Value(key any) any {
	if _, ok := key.(factoryKey); ok {
		return c
	}
	return c.parent.Value(key)
}
func (c *factoryContext) String() string { return fmt.Sprint(c.parent) + ".WithFactory" }

func errOwnSession(name string) error {
	return fmt.Errorf("%w: the factory of %s asked for its own session (directly or through another factory)", ErrReentrant, name)
}

// errOwnTeardown is returned by an end of a scope that is called from the
// teardown of the same scope, which is still in progress.
var errOwnTeardown = fmt.Errorf("%w: Remove or Commit called from a teardown of the scope being ended", ErrReentrant)

// The names of (*Scope).end and of the safety net in stack traces.
var (
	endFunc = reflect.TypeFor[Scope]().PkgPath() + ".(*Scope).end"
	netFunc = reflect.TypeFor[Scope]().PkgPath() + ".(*Scope).cancelled"
)

// insideTeardown reports whether the calling goroutine is inside a
// scope's teardown, below the end that calls it. It is asked only when a
// second ender finds a teardown in progress, which is rare, so the cost of
// reading the stack does not matter; a false positive (a teardown that
// ends another scope being torn down elsewhere) returns an error rather
// than waiting.
func insideTeardown() bool { return onStack(endFunc) }

// insideNet reports whether the calling goroutine runs a safety net.
func insideNet() bool { return onStack(netFunc) }

func onStack(fn string) bool {
	pcs := make([]uintptr, 256)
	n := runtime.Callers(4, pcs) // skip Callers, onStack, its caller and the end asking
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if f.Function == fn {
			return true
		}
		if !more {
			return false
		}
	}
}
