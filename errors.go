package scoped

import "errors"

// Sentinel errors, matched with [errors.Is]. Errors returned by this package
// wrap them (and the underlying cause, where there is one) with %w.
var (
	// ErrNoScope is returned by Current outside any scope: the context
	// carries no [Scope] (see [Begin]) or the [ScopeFunc] found no key.
	ErrNoScope = errors.New("scoped: no scope in context (call scoped.Begin or use the scopedhttp middleware)")

	// ErrScopeClosed is returned by Current in a scope that has already
	// been removed or committed. A session is never silently re-created
	// for a scope that has ended: it would never be torn down.
	ErrScopeClosed = errors.New("scoped: scope already removed")

	// ErrClosed is returned by Current after [ScopedSession.Close].
	ErrClosed = errors.New("scoped: scoped session closed")

	// ErrInvalidKey is returned when a [ScopeFunc] returns a key that
	// cannot be a map key (a slice, map or func, or a struct or array
	// holding one).
	ErrInvalidKey = errors.New("scoped: scope key is not comparable")

	// ErrFactoryPanicked is returned to callers that were waiting for a
	// session whose factory panicked (the caller that ran the factory
	// gets the panic itself).
	ErrFactoryPanicked = errors.New("scoped: session factory panicked")
)

// ErrNotBound is returned by the package-level [Current] when no
// ScopedSession of that session type is bound to the context.
var ErrNotBound = errors.New("scoped: no ScopedSession bound for this session type (use scoped.Bind or scopedhttp.Bind)")
