package scopedgrpc

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/rpcscope"
)

// pkg is what this package is to the implementation it shares with
// scopedconnect (shared/rpcscope).
var pkg = &rpcscope.Package[codes.Code]{
	Name:             "scopedgrpc",
	EndedEarly:       errors.New("scopedgrpc: call ended before the commit point, changes rolled back"),
	Code:             status.Code,
	OK:               codes.OK,
	Internal:         codes.Internal,
	DeadlineExceeded: codes.DeadlineExceeded,
	Canceled:         codes.Canceled,
	Aborted:          codes.Aborted,
	NewError:         status.Error,
}

// An Option configures [UnaryServerInterceptor] and [StreamServerInterceptor].
type Option interface {
	apply(*rpcscope.Config[codes.Code])
}

type option rpcscope.Option[codes.Code]

func (o option) apply(c *rpcscope.Config[codes.Code]) { o(c) }

func newConfig(opts []Option) *rpcscope.Config[codes.Code] {
	return rpcscope.NewConfig(pkg, DefaultErrorHandler, opts, Option.apply)
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
// nothing of a failed run reaches the client (its trailers, set with
// grpc.SetTrailer, are dropped with it), except headers it sent itself
// with grpc.SendHeader, or set with grpc.SetHeader (which the next run's
// add to). Streaming calls are never run again: the
// [StreamServerInterceptor] ignores WithRetry. Nor is a call whose
// handler committed a session by hand ([scoped.ScopedSession.Commit]):
// that part is saved.
//
// A commit that fails retryably on the last run is answered Aborted by
// [DefaultErrorHandler]; a retryable error the handler returned on the
// last run reaches the client as the handler returned it. WithRetry needs
// an automatic commit mode: building an interceptor panics in [Manual]
// mode.
func WithRetry(maxAttempts int, retryable func(error) bool) Option {
	return option(pkg.Retry(maxAttempts, retryable))
}

// WithCommitMode sets when a call's scope is committed. The default is
// [Manual].
func WithCommitMode(m CommitMode) Option { return option(pkg.Mode(rpcscope.Mode(m))) }

// WithCommitPolicy commits a call's scope when commit(code) returns true
// and rolls it back otherwise; code is the status code of the handler's
// error, [codes.OK] when it returned nil. It replaces any [WithCommitMode].
func WithCommitPolicy(commit func(code codes.Code) bool) Option {
	return option(pkg.CommitPolicy(commit))
}

// WithErrorHandler sets what the client gets when a call's scope must be
// committed but cannot be: h receives the commit error (or the context's
// error when the call ended before the commit point) and returns the
// error the call ends with, normally one made by the status package. The
// default is [DefaultErrorHandler].
func WithErrorHandler(h func(ctx context.Context, err error) error) Option {
	return option(pkg.ErrorHandler(h))
}

// Bind makes [scoped.Current] for session type S find r in handlers, as
// [scoped.Bind] does for a context. One interceptor binds at most one
// ScopedSession per session type: building it panics on two different
// ones (the same ScopedSession twice is harmless).
func Bind[S any](r *scoped.ScopedSession[S]) Option { return option(rpcscope.Bind(pkg, r)) }
