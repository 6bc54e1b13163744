package scopedhttp

import (
	"fmt"
	"net/http"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/bindings"
)

// An Option configures [Middleware].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	commit      func(status int) bool // nil: Manual
	onError     func(w http.ResponseWriter, r *http.Request, err error)
	bound       []bindings.Binding // the Bind options
	limit       int
	timeout     time.Duration
	uncommitted func(r *http.Request, status int)
	attempts    int              // WithRetry; 0: none
	retryable   func(error) bool // WithRetry
	bodyLimit   int              // WithRetryBodyLimit
}

// DefaultBufferLimit is the default of [WithBufferLimit]: 1 MiB. It holds
// nearly every API response (JSON documents, pages, small files) whole, so
// that a failed commit can still be answered cleanly, while bounding the
// memory of a request to what one such response takes anyway. Larger
// bodies, downloads and exports, stream, with the guarantee that a failed
// commit breaks them.
const DefaultBufferLimit = 1 << 20

// WithCommitMode sets when the request's scope is committed. The default
// is [Manual].
func WithCommitMode(m CommitMode) Option {
	p := m.policy()
	return optionFunc(func(c *config) { c.commit = p })
}

// WithCommitPolicy commits the request's scope when commit(status)
// returns true, and rolls it back otherwise; status is the status the
// handler set (200 if it set none). It replaces any [WithCommitMode].
func WithCommitPolicy(commit func(status int) bool) Option {
	if commit == nil {
		panic("scopedhttp: WithCommitPolicy(nil); use WithCommitMode(Manual)")
	}
	return optionFunc(func(c *config) { c.commit = commit })
}

// WithBufferLimit sets how many bytes of a response body the automatic
// modes hold until the commit (default [DefaultBufferLimit]). A response
// that outgrows it starts streaming: its commit happens when the handler
// returns, and a failed commit aborts it. n = 0 streams every body (the
// status and headers are still held until the first body byte or flush).
// The buffers are pooled per middleware.
func WithBufferLimit(n int) Option {
	if n < 0 {
		panic(fmt.Sprintf("scopedhttp: WithBufferLimit(%d): the limit cannot be negative", n))
	}
	return optionFunc(func(c *config) { c.limit = n })
}

// WithTimeout bounds each request: the handler's context ends after d.
// In the automatic modes the timeout is coordinated with the commit.
// If it passes before the commit starts, the sessions that may be ended
// from another goroutine are rolled back at once, the rest when the
// handler returns, and the client gets the error handler's 503 (nothing
// was saved); a request that holds nothing to commit (only a pinned
// connection, whose statements were saved as they ran) gets its own
// answer. If it passes while the commit runs, the commit is not
// interrupted: the answer waits for its outcome and tells it.
//
// The handler is not pre-empted (Go cannot stop a goroutine): the answer
// goes out when it returns, so a handler should watch its context, as
// database drivers do.
//
// [http.TimeoutHandler] wrapped around the middleware cannot be truthful:
// it answers 503 at its deadline from its own goroutine, without knowing
// that the commit inside has begun, and a COMMIT that lands after it
// saved the work the client was told failed.
func WithTimeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("scopedhttp: WithTimeout(%v): the timeout must be positive", d))
	}
	return optionFunc(func(c *config) { c.timeout = d })
}

// WithUncommittedHook sets what sees a Manual-mode request that answered
// 2xx or 3xx while sessions of its scope that have a commit (transactions)
// were still open when the handler returned, and were rolled back:
// typically a handler that forgot to commit. A session with nothing to
// commit, such as a pinned connection whose statements were saved as
// they ran, does not count. hook gets the request and its status. The default logs a
// warning with log/slog for requests whose method usually changes
// something (not GET, HEAD, OPTIONS or TRACE, which often read in a
// transaction and roll it back on purpose); nil disables it.
func WithUncommittedHook(hook func(r *http.Request, status int)) Option {
	return optionFunc(func(c *config) { c.uncommitted = hook })
}

// WithErrorHandler sets what the client gets when the scope must be
// committed but cannot be: the commit failed, or the request's context
// ended before the commit. It writes to the underlying ResponseWriter,
// before anything else was written, with none of the handler's headers;
// err wraps the cause, and errors.Is tells the outcome with
// [scoped.ErrNotCommitted], [scoped.ErrPartiallyCommitted] and
// [scoped.ErrCommitUnknown]. The default is [DefaultErrorHandler].
func WithErrorHandler(h func(w http.ResponseWriter, r *http.Request, err error)) Option {
	if h == nil {
		panic("scopedhttp: WithErrorHandler(nil)")
	}
	return optionFunc(func(c *config) { c.onError = h })
}

// Bind makes [scoped.Current] for session type S find r in handlers, as
// [scoped.Bind] does for a context. One middleware binds at most one
// ScopedSession per session type: [Middleware] panics otherwise.
func Bind[S any](r *scoped.ScopedSession[S]) Option {
	if r == nil {
		panic("scopedhttp: Bind(nil)")
	}
	b := bindings.Of(r)
	return optionFunc(func(c *config) { c.bound = bindings.Add("scopedhttp", c.bound, b) })
}
