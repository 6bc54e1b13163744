// Package bound is the protocol between scoped's core and an adapter
// whose driver ties a session's life to the context the session is begun
// with, as database/sql ties a *sql.Tx to the context of BeginTx.
//
// Such an adapter begins with a context of its own that ends the begin if
// the scope's context ends meanwhile and never ends the session afterwards
// (scopedsql's beginCtx). It could watch the scope's context itself
// (context.AfterFunc: three allocations per begin), but a scope with a
// safety net already watches it: the factory context of a session created
// in such a scope is a [Watcher], which fires the adapter's context from
// the net's own registration. The bounded context itself lives with the
// adapter; the core only says when it fires.
//
// It is not for applications. It is public only because adapters such as
// scopedpgx are modules of their own, and Go lets no module import
// another's internal packages; like every package of the root module it
// keeps its API within a major version.
package bound

// Target is what a Watcher fires: the adapter's bounded context.
type Target interface {
	// Fire ends the begin. err is what the bounded context's Err must say
	// from now on: the scope context's error, or context.Canceled when the
	// scope ended. It runs at most once, with none of the core's locks
	// held, possibly on another goroutine and possibly within Watch.
	Fire(err error)
}

// Watcher is implemented by the context a scoped factory runs with.
type Watcher interface {
	// Watches reports whether Watch may watch: false when nothing can cut
	// the begin short (no safety net, a context never cancelled), so that
	// the adapter need not make a Target.
	Watches() bool
	// Watch has t fired if the scope's safety net fires, or the scope
	// ends, before Unwatch. It returns false when no safety net watches
	// this creation (the scope or the session is without one, or the
	// scope's context is never cancelled), or when another begin of the
	// same creation is watched and not yet unwatched (one watch at a
	// time): the adapter must watch the context itself.
	Watch(t Target) bool
	// Unwatch ends the watch. It returns nil if t was not fired and never
	// will be, and otherwise why it was: the scope context's cause, or
	// scoped.ErrScopeClosed. Whatever was begun is then being undone by
	// its driver.
	Unwatch() error
}
