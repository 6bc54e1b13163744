package scoped

import (
	"context"
	"fmt"
	"reflect"
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

type teardownOverride struct {
	set bool
	fn  any
	via string // the option's name, for the panic message
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

// WithTeardownTimeout bounds how long ending one session (its commit or
// rollback, then its close) may hold the caller: the teardown gets a
// context with that deadline, and past it the caller stops waiting and
// gets an error wrapping [ErrTeardownTimeout] (for a commit, also
// [ErrCommitUnknown]: the commit may still land). pgx honours the deadline
// (it closes the connection); database/sql's Commit and Rollback take no
// context, so for them the teardown goes on, on a goroutine of its own,
// until the driver returns, holding its connection, and its late outcome
// reaches the teardown error hook. Bound those at the driver too (MySQL's
// readTimeout and writeTimeout, lib/pq's tcp_user_timeout and keepalives).
//
// The default is no bound, which costs nothing; with a bound, each end
// costs a goroutine and a timer. d <= 0 means no bound.
func WithTeardownTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.timeout = d })
}

// WithCommit overrides how a session is committed by [Scope.Commit] and
// [ScopedSession.Commit]. nil makes sessions not committable: they are
// rolled back or closed instead. S must be the session type of the
// [ScopedSession]; New panics otherwise.
func WithCommit[S any](f func(ctx context.Context, s S) error) Option {
	return teardownOption[S]("WithCommit", f, func(c *config) *teardownOverride { return &c.commit })
}

// WithRollback overrides how a session that is not committed is rolled
// back when its scope ends. nil means there is nothing to roll back.
func WithRollback[S any](f func(ctx context.Context, s S) error) Option {
	return teardownOption[S]("WithRollback", f, func(c *config) *teardownOverride { return &c.rollback })
}

// WithClose overrides how a session is closed after its commit or
// rollback (for example [database/sql.Conn.Close]). nil means there is
// nothing to close.
func WithClose[S any](f func(ctx context.Context, s S) error) Option {
	return teardownOption[S]("WithClose", f, func(c *config) *teardownOverride { return &c.close })
}

func teardownOption[S any](via string, f func(context.Context, S) error, field func(*config) *teardownOverride) Option {
	return optionFunc(func(c *config) {
		*field(c) = teardownOverride{set: true, fn: f, via: fmt.Sprintf("%s[%v]", via, reflect.TypeFor[S]())}
	})
}

// resolve turns an override into a function of the session type, or
// keeps the default when the option was not given.
func resolve[S any](o teardownOverride, def func(context.Context, S) error) func(context.Context, S) error {
	if !o.set {
		return def
	}
	f, ok := o.fn.(func(context.Context, S) error)
	if !ok {
		panic(fmt.Sprintf("scoped: %s given to a ScopedSession[%v]", o.via, reflect.TypeFor[S]()))
	}
	return f
}
