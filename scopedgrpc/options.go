package scopedgrpc

import (
	"context"

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
}

func newConfig(opts []Option) *config {
	c := &config{onError: DefaultErrorHandler}
	for _, o := range opts {
		o.apply(c)
	}
	return c
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
