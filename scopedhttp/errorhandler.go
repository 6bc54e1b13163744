package scopedhttp

import (
	"context"
	"errors"
	"net/http"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedsql"
)

// DefaultErrorHandler answers a request whose scope could not be
// committed, and says what became of its changes:
//
//   - 500, "may have been saved", when the outcome is unknown
//     ([scoped.ErrCommitUnknown], as when the connection was lost during
//     COMMIT);
//   - 500, "partially saved", when some sessions committed and a later
//     one failed ([scoped.ErrPartiallyCommitted]), or the request ended
//     before the commit after a session was committed by hand
//     (ScopedSession.Commit);
//   - 500, or 503 when the request's deadline passed, "not saved", when
//     nothing was ([scoped.ErrNotCommitted], or a request that ended
//     before the commit with nothing committed by hand);
//   - 503 with Retry-After: 1, "not saved, conflicted with concurrent
//     work; retry", when the commit failed with an error the
//     [WithRetry] classifier accepts (after the last run), or
//     scopedsql.Retryable does (a serialization failure or deadlock, on
//     any engine it knows), and nothing was saved: the client may send
//     the request again;
//   - 500, "may not have been saved", for a failure it cannot classify.
//
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
	var what string
	switch {
	case errors.Is(err, scoped.ErrCommitUnknown):
		what = "the request's changes may have been saved; check before retrying"
	case errors.Is(err, scoped.ErrPartiallyCommitted):
		what = "the request's changes were partially saved"
	case errors.Is(err, errRetryable) || scoped.MayRetry(err, scopedsql.Retryable):
		what = "the request conflicted with concurrent changes and was not saved; retry it"
		code = http.StatusServiceUnavailable
		h.Set("Retry-After", "1")
	case errors.Is(err, scoped.ErrNotCommitted):
		what = "the request's changes were not saved"
		if errors.Is(err, context.DeadlineExceeded) {
			code = http.StatusServiceUnavailable
		}
	default:
		what = "the request's changes may not have been saved"
	}
	h.Set("Cache-Control", "no-store")
	http.Error(w, http.StatusText(code)+": "+what, code)
}

// errRetryable marks a commit error the WithRetry classifier accepted,
// for [DefaultErrorHandler].
var errRetryable = errors.New("scopedhttp: the request's unit of work failed with a retryable error, nothing was saved")

// responseHeaders belong to the handler's intended response, not to the
// error that replaces it.
var responseHeaders = []string{
	"Accept-Ranges", "Allow", "Cache-Control", "Content-Disposition", "Content-Encoding",
	"Content-Language", "Content-Length", "Content-Location", "Content-Range", "Content-Type",
	"ETag", "Expires", "Last-Modified", "Link", "Location", "Refresh", "Retry-After",
	"Set-Cookie", "Trailer", "Transfer-Encoding",
}
