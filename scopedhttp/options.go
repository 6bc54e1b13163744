package scopedhttp

import (
	"context"
	"errors"
	"net/http"

	"github.com/go-scoped/scoped"
)

// An Option configures [Middleware].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	commit  func(status int) bool // nil: Manual
	onError func(w http.ResponseWriter, r *http.Request, err error)
	binds   []func(context.Context) context.Context
}

// WithCommitMode sets when the request's scope is committed. The default
// is [Manual].
func WithCommitMode(m CommitMode) Option {
	p := m.policy()
	return optionFunc(func(c *config) { c.commit = p })
}

// WithCommitPolicy commits the request's scope when commit(status)
// returns true, and rolls it back otherwise; status is the response status
// at the commit point. It replaces any [WithCommitMode].
func WithCommitPolicy(commit func(status int) bool) Option {
	if commit == nil {
		panic("scopedhttp: WithCommitPolicy(nil); use WithCommitMode(Manual)")
	}
	return optionFunc(func(c *config) { c.commit = commit })
}

// WithErrorHandler sets what the client gets when the scope must be
// committed but cannot be: the commit failed, or the request's context
// ended before the commit point. It writes to the underlying
// ResponseWriter, before anything else was written; err wraps the cause.
// The default, [DefaultErrorHandler], answers 500 (503 for a passed
// deadline) with a short text body.
func WithErrorHandler(h func(w http.ResponseWriter, r *http.Request, err error)) Option {
	if h == nil {
		panic("scopedhttp: WithErrorHandler(nil)")
	}
	return optionFunc(func(c *config) { c.onError = h })
}

// Bind makes [scoped.Current] for session type S find r in handlers, as
// [scoped.Bind] does for a context.
func Bind[S any](r *scoped.ScopedSession[S]) Option {
	if r == nil {
		panic("scopedhttp: Bind(nil)")
	}
	bind := func(ctx context.Context) context.Context { return scoped.Bind(ctx, r) }
	return optionFunc(func(c *config) { c.binds = append(c.binds, bind) })
}

// DefaultErrorHandler answers 500 Internal Server Error, or 503 Service
// Unavailable when the request's deadline passed, with a one-line body.
// It drops the headers that describe the response the handler meant to
// send (Location, Set-Cookie, ETag, Content-*, caching), and keeps those
// that describe the exchange, such as a request id or CORS headers set by
// an outer middleware, so that the client can still read the error.
func DefaultErrorHandler(w http.ResponseWriter, _ *http.Request, err error) {
	h := w.Header()
	for _, k := range responseHeaders {
		h.Del(k)
	}
	code := http.StatusInternalServerError
	if errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusServiceUnavailable
	}
	h.Set("Cache-Control", "no-store")
	http.Error(w, http.StatusText(code)+": the request's changes were not saved", code)
}

// responseHeaders belong to the handler's intended response, not to the
// error that replaces it.
var responseHeaders = []string{
	"Accept-Ranges", "Allow", "Cache-Control", "Content-Disposition", "Content-Encoding",
	"Content-Language", "Content-Length", "Content-Location", "Content-Range", "Content-Type",
	"ETag", "Expires", "Last-Modified", "Link", "Location", "Refresh", "Retry-After",
	"Set-Cookie", "Trailer", "Transfer-Encoding",
}
