package scopedhttp

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/go-scoped/scoped/internal/unithooks"
)

// The unit's hooks (scoped.OnCommit, scoped.OnRollback) run once the
// response has left, so that they never delay the client and can never
// turn a committed answer into an error: the scope's end keeps them
// (unithooks.Hold) and the middleware runs them after answering (see
// runHooks for when that is on a goroutine of their own).

// lengthForHooks sets the Content-Length of a held response whose unit
// has hooks to run, when the handler did not: the client then knows the
// response complete once its last byte arrives, without waiting for the
// end of the chunked body, which net/http writes only when the
// middleware returns, after the hooks.
func (w *writer) lengthForHooks() {
	h := w.ResponseWriter.Header()
	if !unithooks.Pending(w.scope) || h.Get("Content-Length") != "" || h.Get("Transfer-Encoding") != "" ||
		w.req.Method == http.MethodHead || !bodyAllowed(w.status) || trailers(h) {
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(w.held.body)))
}

// trailers reports whether h declares trailers (the Trailer header, or a
// key with http.TrailerPrefix): HTTP/1.1 sends them only after a chunked
// body, which a Content-Length would replace, dropping them.
func trailers(h http.Header) bool {
	if _, ok := h["Trailer"]; ok {
		return true
	}
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// bodyAllowed reports whether a response with status may have a body
// (RFC 9110: not 1xx, 204 or 304). 0 is the 200 net/http sends.
func bodyAllowed(status int) bool {
	return !(status >= 100 && status < 200 || status == http.StatusNoContent || status == http.StatusNotModified)
}

// runHooks runs the hooks the scope's end kept, after flushing the
// response so that it has left first. A run followed by another
// (WithRetry) answered nothing: its hooks run without a flush.
//
// A client has the whole response before the middleware returns only
// over HTTP/1 with a Content-Length (or no body): net/http sends the end
// of any other response (HTTP/2's END_STREAM, the last chunk) only once
// the handler has returned, and a client reading to the end waits for
// it. Such a response's hooks run on a goroutine of their own once the
// middleware has returned; http.Server.Shutdown does not wait for them.
func (w *writer) runHooks(again bool) {
	if !unithooks.Pending(w.scope) {
		return
	}
	if !again && w.state != hijacked {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
		if !w.completeBeforeReturn() {
			go unithooks.Run(w.scope)
			return
		}
	}
	unithooks.Run(w.scope)
}

// completeBeforeReturn reports whether the client has the whole response
// once it has been flushed, before the handler returns. It reads the
// headers that went out, not the status the handler set: the error
// handler's answer to a failed commit replaces a 204 the handler chose.
func (w *writer) completeBeforeReturn() bool {
	return w.req.ProtoMajor == 1 && (w.ResponseWriter.Header().Get("Content-Length") != "" ||
		w.req.Method == http.MethodHead)
}
