// Package bound is the protocol between scoped's core and an adapter
// whose driver ties a session's life to the context the session is begun
// with, as database/sql ties a *sql.Tx to the context of BeginTx.
//
// Such an adapter wants a context that ends the begin if the scope's
// context ends meanwhile, and never ends the session afterwards. It could
// watch the scope's context itself (context.AfterFunc, four allocations
// per begin), but the scope already watches it for its safety net. The
// factory context of a session created in a scope with a safety net is a
// [Source]: its [Context] is done exactly when the safety net fires (or
// the scope ends) before [Context.Settle] is called, and is never done
// after.
package bound

import "context"

// Source is implemented by the context a scoped factory runs with.
type Source interface {
	// BoundCreation returns the creation's bounded context, or false when
	// there is none: no safety net watches this creation (the scope or
	// the session is without one, or the scope's context is never
	// cancelled), and the adapter must bound the begin itself.
	BoundCreation() (Context, bool)
}

// Context is a context with the factory context's values that is done
// only if the scope's safety net fires, or the scope ends, before Settle.
type Context interface {
	context.Context
	// Settle ends the bound: from now on the context is never done and
	// nothing registered with it runs. It returns nil if the bound never
	// fired, and otherwise why it fired (the scope context's cause, or
	// scoped.ErrScopeClosed): whatever was begun with the context is
	// being undone by its driver.
	Settle() error
}
