package scoped

import "context"

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
