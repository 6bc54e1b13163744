package scoped

import (
	"context"
	"time"
)

// An Option configures a [ScopedSession] at construction. Options are
// resolved once, in [New]; nothing is re-merged per call.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	noNet     bool
	name      string
	scopeFunc ScopeFunc
	hook      func(ctx context.Context, err error)
	hookSet   bool
	events    func(ctx context.Context, e Event)
	timeout   time.Duration
	// Teardown overrides, each a func(context.Context, S) error checked
	// against S in New. set distinguishes "override with nil" from "absent".
	commit, rollback, close teardownOverride
	nest                    teardownOverride // WithNesting
}

// WithName names the sessions in errors, logs and [ScopedSession.String].
// The default is the session type, such as "*sql.Tx".
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// WithoutSafetyNet keeps the safety net (see [Scope]) away from this
// ScopedSession's sessions, for session types that must not be ended on
// another goroutine while a query may still run on them, such as a pinned
// *pgxpool.Conn. A scope holding such a session has no safety net at all:
// it must be removed, as defer scope.Remove() does.
func WithoutSafetyNet() Option {
	return optionFunc(func(c *config) { c.noNet = true })
}

// WithScopeFunc replaces the default [ScopeFunc] ([ScopeToken]). See
// [ScopeFunc] for how sessions under a custom key live and end.
func WithScopeFunc(f ScopeFunc) Option {
	if f == nil {
		panic("scoped: WithScopeFunc(nil)")
	}
	return optionFunc(func(c *config) { c.scopeFunc = f })
}

// WithTeardownErrorHook sets the function that sees every error of ending
// a session: failed commits, rollbacks and closes, including those of the
// cancellation safety net that no caller receives. Errors returned by
// [Scope.Remove] and friends are passed to it as well, so that a plain
// defer scope.Remove() loses nothing. The default logs them with
// [log/slog.Default] at level Error; nil discards them.
func WithTeardownErrorHook(f func(ctx context.Context, err error)) Option {
	return optionFunc(func(c *config) { c.hook, c.hookSet = f, true })
}
