package scopedhttp

import (
	"context"
	"errors"
	"net/http"

	"github.com/go-scoped/scoped"
)

// DefaultErrorHandler answers a request whose scope could not be
// committed, and says what became of its changes:
//
//   - 500, "may have been saved", when the outcome is unknown
//     ([scoped.ErrCommitUnknown], as when the connection was lost during
//     COMMIT);
//   - 500, "partially saved", when some sessions committed and a later
//     one failed ([scoped.ErrPartiallyCommitted]);
//   - 500, or 503 when the request's deadline passed, "not saved", when
//     nothing was ([scoped.ErrNotCommitted], or a request that ended
//     before the commit);
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

// responseHeaders belong to the handler's intended response, not to the
// error that replaces it.
var responseHeaders = []string{
	"Accept-Ranges", "Allow", "Cache-Control", "Content-Disposition", "Content-Encoding",
	"Content-Language", "Content-Length", "Content-Location", "Content-Range", "Content-Type",
	"ETag", "Expires", "Last-Modified", "Link", "Location", "Refresh", "Retry-After",
	"Set-Cookie", "Trailer", "Transfer-Encoding",
}
