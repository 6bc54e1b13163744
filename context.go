package scoped

import (
	"context"
	"fmt"
	"time"
)

// The contexts of a scope: the one Begin returns, which carries the scope,
// and the one sessions are ended with, which keeps its values but is never
// cancelled. Both are the Scope itself under another type: no allocation.

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
