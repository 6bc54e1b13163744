package scopedgrpc

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/bindings"
)

// An Option configures [UnaryServerInterceptor] and [StreamServerInterceptor].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	commit  func(codes.Code) bool // nil: Manual
	onError func(ctx context.Context, err error) error
	binds   []bindings.Binding

	attempts  int              // WithRetry; 0: none
	retryable func(error) bool // WithRetry
}

func newConfig(opts []Option) *config {
	c := &config{onError: DefaultErrorHandler}
	for _, o := range opts {
		o.apply(c)
	}
	if c.attempts > 0 && c.commit == nil {
		panic("scopedgrpc: WithRetry needs an automatic commit mode (WithCommitMode(Autocommit) or WithCommitPolicy): " +
			"in Manual mode the handler commits, and a call run again would save that twice")
	}
	return c
}

// WithRetry runs a unary call again, in a fresh scope, when its unit of
// work failed with an error retryable accepts and nothing of it was saved
// (see [scoped.MayRetry]): when the handler returned such an error, when
// its commit failed that way (PostgreSQL reports many serialization
// failures at COMMIT), or when a unit inside it (a [scoped.Run] with
// [scoped.WithRetry], such as a service function the handler called)
// failed that way and asked its root to run again (see
// [scoped.Scope.RetryRequested]), even if the handler swallowed that
// error. scopedsql.Retryable and scopedpgx.Retryable are the classifiers
// for serialization failures and deadlocks.
//
// The call runs at most maxAttempts times in all, with a jittered
// exponential pause between runs, within the call's context. Each run
// gets the same request message, which the handler must not modify, and
// nothing of a failed run reaches the client, except headers it sent
// itself with grpc.SendHeader, or set with grpc.SetHeader (which the next
// run's add to). Streaming calls are never run again: the
// [StreamServerInterceptor] ignores WithRetry.
//
// A commit that fails retryably on the last run is answered Aborted by
// [DefaultErrorHandler]; a retryable error the handler returned on the
// last run reaches the client as the handler returned it. WithRetry needs
// an automatic commit mode: building an interceptor panics in [Manual]
// mode.
func WithRetry(maxAttempts int, retryable func(error) bool) Option {
	if maxAttempts < 1 {
		panic(fmt.Sprintf("scopedgrpc: WithRetry(%d, ...): maxAttempts must be at least 1", maxAttempts))
	}
	if retryable == nil {
		panic("scopedgrpc: WithRetry with nil retryable")
	}
	return optionFunc(func(c *config) { c.attempts, c.retryable = maxAttempts, retryable })
}

// WithCommitMode sets when a call's scope is committed. The default is
// [Manual].
func WithCommitMode(m CommitMode) Option {
	p := m.policy()
	return optionFunc(func(c *config) { c.commit = p })
}

// WithCommitPolicy commits a call's scope when commit(code) returns true
// and rolls it back otherwise; code is the status code of the handler's
// error, [codes.OK] when it returned nil. It replaces any [WithCommitMode].
func WithCommitPolicy(commit func(code codes.Code) bool) Option {
	if commit == nil {
		panic("scopedgrpc: WithCommitPolicy(nil); use WithCommitMode(Manual)")
	}
	return optionFunc(func(c *config) { c.commit = commit })
}

// WithErrorHandler sets what the client gets when a call's scope must be
// committed but cannot be: h receives the commit error (or the context's
// error when the call ended before the commit point) and returns the
// error the call ends with, normally one made by the status package. The
// default is [DefaultErrorHandler].
func WithErrorHandler(h func(ctx context.Context, err error) error) Option {
	if h == nil {
		panic("scopedgrpc: WithErrorHandler(nil)")
	}
	return optionFunc(func(c *config) { c.onError = h })
}

// Bind makes [scoped.Current] for session type S find r in handlers, as
// [scoped.Bind] does for a context. One interceptor binds at most one
// ScopedSession per session type: building it panics on two different
// ones (the same ScopedSession twice is harmless).
func Bind[S any](r *scoped.ScopedSession[S]) Option {
	if r == nil {
		panic("scopedgrpc: Bind(nil)")
	}
	b := bindings.Of(r)
	return optionFunc(func(c *config) { c.binds = bindings.Add("scopedgrpc", c.binds, b) })
}
