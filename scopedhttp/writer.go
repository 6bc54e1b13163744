package scopedhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/go-scoped/scoped"
)

// ErrCommitFailed is returned by Write, ReadFrom and Flush after the
// scope could not be committed and the error response was sent instead:
// whatever the handler writes then is discarded.
var ErrCommitFailed = errors.New("scopedhttp: commit failed, response replaced by the error handler's")

// writer intercepts the response's first WriteHeader, Write, ReadFrom,
// Flush or Hijack: the commit point. Handlers use it from one goroutine,
// as net/http requires, so it needs no lock.
type writer struct {
	http.ResponseWriter
	req   *http.Request
	scope *scoped.Scope
	cfg   *config

	decided  bool // the commit point has passed
	failed   bool // the commit failed; the error response was sent
	hijacked bool
}

// decide runs at the commit point. It reports whether the handler's
// response may go out; if not, the error handler's has.
func (w *writer) decide(status int) bool {
	w.decided = true
	if w.cfg.commit == nil || w.scope.Err() != nil {
		// Manual: the scope is the handler's until it returns. Or the
		// handler already ended the scope itself: nothing left to decide.
		return true
	}
	if !w.cfg.commit(status) {
		_ = w.scope.Remove() // errors reach the sessions' teardown hooks
		return true
	}
	var err error
	if ctx := w.req.Context(); ctx.Err() != nil && w.scope.Len() > 0 {
		_ = w.scope.Remove()
		err = fmt.Errorf("scopedhttp: request ended before the commit point, changes rolled back: %w", context.Cause(ctx))
	} else if cerr := w.scope.Commit(); cerr != nil {
		err = fmt.Errorf("scopedhttp: %w", cerr)
	}
	if err != nil {
		w.failed = true
		w.cfg.onError(w.ResponseWriter, w.req, err)
		return false
	}
	return true
}

// finish runs when the handler has returned.
func (w *writer) finish() {
	if !w.decided {
		w.decide(http.StatusOK) // the status net/http sends for a handler that wrote nothing
	}
	// Manual mode, a hijack, or a failed decision: roll back whatever is
	// left. After an automatic commit or rollback this is a no-op.
	_ = w.scope.Remove()
}

func (w *writer) WriteHeader(code int) {
	if w.failed || w.hijacked {
		return
	}
	if !w.decided {
		if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
			w.ResponseWriter.WriteHeader(code) // informational: not the response's status
			return
		}
		if !w.decide(code) {
			return
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *writer) Write(p []byte) (int, error) {
	if !w.decided {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return 0, ErrCommitFailed
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap gives [http.ResponseController] the underlying writer for what
// the wrapper does not intercept (deadlines, full duplex).
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *writer) FlushError() error {
	if !w.decided {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return ErrCommitFailed
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *writer) Flush() { _ = w.FlushError() }

func (w *writer) ReadFrom(src io.Reader) (int64, error) {
	if !w.decided {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return 0, ErrCommitFailed
	}
	return w.ResponseWriter.(io.ReaderFrom).ReadFrom(src)
}

// Hijack hands the connection to the handler. No status will be sent
// through the server, so the commit point passes as a rollback: in the
// automatic modes the scope ends now, in Manual mode when the handler
// returns; a handler that hijacks commits first what it means to keep.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return conn, brw, err
	}
	w.hijacked = true
	if !w.decided {
		w.decided = true
		if w.cfg.commit != nil {
			_ = w.scope.Remove()
		}
	}
	return conn, brw, nil
}

// The variants of the wrapper offer exactly the optional interfaces of
// the underlying writer, so that a type assertion for http.Flusher or
// http.Hijacker answers as it would without the middleware. A writer that
// can flush or hijack only through Unwrap (another middleware's wrapper
// further out) counts as able to: otherwise http.ResponseController would
// unwrap past this one and flush or hijack behind the commit point.
type (
	basicWriter interface {
		http.ResponseWriter
		Unwrap() http.ResponseWriter
	}
	flusher interface {
		http.Flusher
		FlushError() error
	}
)

// canFlush reports whether http.ResponseController can flush w.
func canFlush(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case http.Flusher, interface{ FlushError() error }:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

// canHijack reports whether http.ResponseController can hijack w.
func canHijack(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case http.Hijacker:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

// newWriter returns the writer for w and the variant that the handler
// gets, in one allocation: the variant's fields all point back at the
// writer it is allocated with.
func newWriter(w http.ResponseWriter, r *http.Request, scope *scoped.Scope, cfg *config) (*writer, http.ResponseWriter) {
	f, h := canFlush(w), canHijack(w)
	_, rf := w.(io.ReaderFrom) // io.Copy does not unwrap
	switch {
	case f && h && rf: // net/http's HTTP/1 writer
		v := &struct {
			w  writer
			rw struct {
				basicWriter
				flusher
				http.Hijacker
				io.ReaderFrom
			}
		}{w: writer{ResponseWriter: w, req: r, scope: scope, cfg: cfg}}
		v.rw.basicWriter, v.rw.flusher, v.rw.Hijacker, v.rw.ReaderFrom = &v.w, &v.w, &v.w, &v.w
		return &v.w, &v.rw
	case f && !h && !rf: // HTTP/2, httptest.ResponseRecorder
		v := &struct {
			w  writer
			rw struct {
				basicWriter
				flusher
			}
		}{w: writer{ResponseWriter: w, req: r, scope: scope, cfg: cfg}}
		v.rw.basicWriter, v.rw.flusher = &v.w, &v.w
		return &v.w, &v.rw
	}
	// The other combinations are rare: two allocations are fine.
	sw := &writer{ResponseWriter: w, req: r, scope: scope, cfg: cfg}
	switch {
	case f && h:
		return sw, &struct {
			basicWriter
			flusher
			http.Hijacker
		}{sw, sw, sw}
	case f && rf:
		return sw, &struct {
			basicWriter
			flusher
			io.ReaderFrom
		}{sw, sw, sw}
	case h && rf:
		return sw, &struct {
			basicWriter
			http.Hijacker
			io.ReaderFrom
		}{sw, sw, sw}
	case h:
		return sw, &struct {
			basicWriter
			http.Hijacker
		}{sw, sw}
	case rf:
		return sw, &struct {
			basicWriter
			io.ReaderFrom
		}{sw, sw}
	}
	return sw, &struct{ basicWriter }{sw}
}
