package rpcscope

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/bindings"
)

// A Package describes an RPC interceptor package (scopedgrpc,
// scopedconnect) to the logic they share: C is its framework's status
// code type, the one a commit policy decides on.
type Package[C comparable] struct {
	Name       string        // the prefix of its errors and panics
	EndedEarly error         // its sentinel for a call that ended before the commit point
	Code       func(error) C // the code of a handler's error, OK for nil
	OK         C             // the code of a handler that returned no error

	// What DefaultErrorHandler answers: the codes of its four outcomes and
	// how the framework makes an error of a code and a message.
	Internal, DeadlineExceeded, Canceled, Aborted C
	NewError                                      func(code C, msg string) error
}

// A Config is an interceptor's configuration, built by [NewConfig]
// and the package's options.
type Config[C comparable] struct {
	pkg     *Package[C]
	commit  func(C) bool // nil: Manual
	onError func(ctx context.Context, err error) error
	binds   []bindings.Binding

	attempts  int              // WithRetry; 0: none
	retryable func(error) bool // WithRetry
}

// An Option sets part of a [Config].
type Option[C comparable] func(*Config[C])

// NewConfig returns the configuration of p's interceptor that opts make
// (apply applies one of p's options), onError p's default error handler.
// It panics on WithRetry in Manual mode.
func NewConfig[C comparable, O any](p *Package[C], onError func(context.Context, error) error, opts []O, apply func(O, *Config[C])) *Config[C] {
	c := &Config[C]{pkg: p, onError: onError}
	for _, o := range opts {
		apply(o, c)
	}
	if c.attempts > 0 && c.commit == nil {
		panic(p.Name + ": WithRetry needs an automatic commit mode (WithCommitMode(Autocommit) or WithCommitPolicy): " +
			"in Manual mode the handler commits, and a call run again would save that twice")
	}
	return c
}

// Retries reports whether the configuration runs a unary call again
// (WithRetry), so that a package's glue keeps each run's answer apart
// only then.
func (c *Config[C]) Retries() bool { return c.attempts > 0 }

// Retry is the package's WithRetry.
func (p *Package[C]) Retry(maxAttempts int, retryable func(error) bool) Option[C] {
	if maxAttempts < 1 {
		panic(fmt.Sprintf("%s: WithRetry(%d, ...): maxAttempts must be at least 1", p.Name, maxAttempts))
	}
	if retryable == nil {
		panic(p.Name + ": WithRetry with nil retryable")
	}
	return func(c *Config[C]) { c.attempts, c.retryable = maxAttempts, retryable }
}

// CommitPolicy is the package's WithCommitPolicy.
func (p *Package[C]) CommitPolicy(commit func(C) bool) Option[C] {
	if commit == nil {
		panic(p.Name + ": WithCommitPolicy(nil); use WithCommitMode(Manual)")
	}
	return func(c *Config[C]) { c.commit = commit }
}

// ErrorHandler is the package's WithErrorHandler.
func (p *Package[C]) ErrorHandler(h func(ctx context.Context, err error) error) Option[C] {
	if h == nil {
		panic(p.Name + ": WithErrorHandler(nil)")
	}
	return func(c *Config[C]) { c.onError = h }
}

// Bind is the package's Bind (a function: a method cannot take the
// session type as a type parameter).
func Bind[C comparable, S any](p *Package[C], r *scoped.ScopedSession[S]) Option[C] {
	if r == nil {
		panic(p.Name + ": Bind(nil)")
	}
	b := bindings.Of(r)
	return func(c *Config[C]) { c.binds = bindings.Add(p.Name, c.binds, b) }
}

// fail gives cause to the error handler, marked for [Package.DefaultErrorHandler]
// when the WithRetry classifier accepts it: the client may run the call
// again.
func (c *Config[C]) fail(ctx context.Context, cause error) error {
	if c.retryable != nil && !errors.Is(cause, c.pkg.EndedEarly) && scoped.MayRetry(cause, c.retryable) {
		cause = retryable{cause}
	}
	return c.onError(ctx, cause)
}
