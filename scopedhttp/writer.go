package scopedhttp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"

	"github.com/go-scoped/scoped"
)

// The states of a response in an automatic mode.
const (
	holding   uint8 = iota // status, headers and body are held until the handler returns
	streaming              // the response is on its way; the commit waits for the return
	hijacked               // the handler took the connection
)

// writer holds the handler's response in an automatic mode (and passes it
// through, noting the status, in Manual mode). Handlers use it from one
// goroutine, as net/http requires, so it needs no lock.
type writer struct {
	http.ResponseWriter
	req   *http.Request
	scope *scoped.Scope
	h     *handler
	held  *held // pooled; nil in Manual mode

	status int // the final status the handler set; 0: none yet
	state  uint8
	broken error // a streamed write failed: the client is gone; nil: none

	// closeEnds: the streamed body ends when the connection closes
	// (HTTP/1.0, Transfer-Encoding: identity), so a closed connection
	// reads as a complete response (see abort).
	closeEnds bool
}

// held is what a response in an automatic mode keeps until the handler
// returns: its body, and the header as it was before the handler ran, to
// put it back if the commit fails. Pooled per middleware.
type held struct {
	body []byte
	keys []string
	vals [][]string
}

// snapshot records the header set outside the middleware. Values are
// kept by slice header: Set replaces a slice and Add appends past the
// recorded length, so the recorded slices still read as before.
func (b *held) snapshot(h http.Header) {
	for k, v := range h {
		b.keys = append(b.keys, k)
		b.vals = append(b.vals, v)
	}
}

// restore puts h back as snapshot saw it: none of the handler's headers
// survive into the error response.
func (b *held) restore(h http.Header) {
	for k := range h {
		delete(h, k)
	}
	for i, k := range b.keys {
		h[k] = b.vals[i]
	}
}

func (b *held) reset() {
	b.body = b.body[:0]
	clear(b.keys) // drop references to the request's header
	clear(b.vals)
	b.keys, b.vals = b.keys[:0], b.vals[:0]
}

func (w *writer) WriteHeader(code int) {
	if w.state == hijacked {
		return
	}
	if w.status != 0 {
		return // superfluous, as net/http treats it (it would log it)
	}
	if code < 100 || code > 999 {
		// net/http's own check, at the handler's call rather than after
		// the commit.
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code) // informational: goes out now, not the response's status
		return
	}
	w.status = code
	if w.held == nil {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *writer) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.state == holding && w.held != nil {
		if len(w.held.body)+len(p) <= w.h.cfg.limit {
			w.hold(p)
			return len(p), nil
		}
		if w.bodyless() {
			return len(p), nil // dropped, as net/http would drop it
		}
		w.stream()
	}
	n, err := w.ResponseWriter.Write(p)
	w.noteBroken(err)
	return n, err
}

// noteBroken records the first failed write of a streaming response: the
// response cannot be completed, so it will not be committed either.
// A body the status does not allow (204, 304), which net/http refuses
// with ErrBodyNotAllowed, breaks nothing: the response is complete
// without it.
func (w *writer) noteBroken(err error) {
	if err != nil && w.broken == nil && w.held != nil && w.state == streaming && !errors.Is(err, http.ErrBodyNotAllowed) {
		w.broken = err
	}
}

// hold appends p to the held body, growing it at most to the limit, so
// that a pooled buffer never exceeds it.
func (w *writer) hold(p []byte) {
	b := w.held.body
	if need := len(b) + len(p); need > cap(b) {
		c := max(2*cap(b), need, 512)
		c = min(c, w.h.cfg.limit)
		nb := make([]byte, len(b), c)
		copy(nb, b)
		b = nb
	}
	w.held.body = append(b, p...)
}

// writeHeldHeader sends the held status and header once the handler has
// returned. net/http takes the header when the handler writes it, so a
// declared trailer's value, set after the body as net/http documents,
// goes out only as a trailer: the held header must not carry it either.
// The values stay in the header map, where net/http reads the trailers.
func (w *writer) writeHeldHeader() {
	h := w.ResponseWriter.Header()
	declared, ok := h["Trailer"]
	if !ok {
		w.ResponseWriter.WriteHeader(w.status)
		return
	}
	var later http.Header
	for _, v := range declared {
		for k := range strings.SplitSeq(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if vv, ok := h[k]; ok {
				if later == nil {
					later = http.Header{}
				}
				later[k] = vv
				delete(h, k)
			}
		}
	}
	w.ResponseWriter.WriteHeader(w.status)
	maps.Copy(h, later)
}

// bodyless reports whether the response has no body to send (HEAD, 204,
// 304): it is complete once its status line and headers are out, so its
// status must stay held until the commit, however much body the handler
// writes past the limit. net/http drops (HEAD) or refuses (204, 304)
// those bytes anyway.
func (w *writer) bodyless() bool {
	return w.req.Method == http.MethodHead || !bodyAllowed(w.status)
}

// stream sends what is held and lets the rest of the response through.
// The commit still happens when the handler returns; the body's end is
// what must not reach the client before it, so a Content-Length is
// dropped: HTTP/1.1 then ends the body with the last chunk, HTTP/2 with
// END_STREAM, both only after the handler and the commit are done, and an
// abort leaves the client with a broken response.
func (w *writer) stream() {
	if w.state != holding || w.held == nil {
		return
	}
	w.state = streaming
	if w.status == 0 {
		w.status = http.StatusOK
	}
	h := w.ResponseWriter.Header()
	h.Del("Content-Length")
	w.closeEnds = w.req.ProtoMajor == 1 && (!w.req.ProtoAtLeast(1, 1) || h.Get("Transfer-Encoding") == "identity")
	w.ResponseWriter.WriteHeader(w.status)
	if len(w.held.body) > 0 {
		_, err := w.ResponseWriter.Write(w.held.body)
		w.noteBroken(err)
		w.held.body = w.held.body[:0]
	}
}

// abort makes sure the client of a streaming response never reads it
// complete, and panics with http.ErrAbortHandler: net/http then closes an
// HTTP/1.1 connection before the last chunk and resets an HTTP/2 stream,
// and does not log it. A body that ends when the connection closes has
// no last chunk to miss: the connection is reset instead (a TCP RST,
// not the FIN, or TLS close_notify, that reads as the body's end).
func (w *writer) abort() {
	if w.closeEnds {
		if conn, _, err := http.NewResponseController(w.ResponseWriter).Hijack(); err == nil {
			for {
				u, ok := conn.(interface{ NetConn() net.Conn })
				if !ok {
					break
				}
				conn = u.NetConn()
			}
			if tc, ok := conn.(interface{ SetLinger(sec int) error }); ok {
				_ = tc.SetLinger(0)
			}
			_ = conn.Close()
		}
	}
	panic(http.ErrAbortHandler)
}

// Unwrap gives [http.ResponseController] the underlying writer for what
// the wrapper does not intercept (deadlines, full duplex).
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *writer) FlushError() error {
	if w.state == hijacked {
		return http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.state == holding && w.held != nil && w.bodyless() {
		// Flushing would send its status line and headers, a complete
		// answer, before the commit: they stay held.
		return nil
	}
	w.stream()
	err := http.NewResponseController(w.ResponseWriter).Flush()
	w.noteBroken(err)
	return err
}

func (w *writer) Flush() { _ = w.FlushError() }

func (w *writer) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	var n int64
	if w.state == holding && w.held != nil {
		var err error
		n, err = w.holdFrom(src)
		if err != nil || w.state == holding {
			return n, err
		}
	}
	m, err := w.ResponseWriter.(io.ReaderFrom).ReadFrom(src)
	if err != nil && w.state == streaming {
		w.noteBroken(err) // may be src's error: not committing a response that did not complete is right either way
	}
	return n + m, err
}

// holdFrom reads src into the held body up to the limit. If src has more,
// it streams what it holds, and the caller copies the rest.
func (w *writer) holdFrom(src io.Reader) (int64, error) {
	var n int64
	limit := w.h.cfg.limit
	for {
		b := w.held.body
		if len(b) >= limit {
			break
		}
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(max(2*cap(b), 512), limit))
			copy(nb, b)
			b = nb
		}
		m, err := src.Read(b[len(b):cap(b)])
		w.held.body = b[:len(b)+m]
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	// Full: one more byte says whether the response outgrows the limit.
	var probe [1]byte
	for {
		m, err := src.Read(probe[:])
		if m > 0 && w.bodyless() {
			k, err := io.Copy(io.Discard, src) // dropped, as net/http would drop it
			return n + int64(m) + k, err
		}
		if m > 0 {
			w.stream()
			k, werr := w.ResponseWriter.Write(probe[:m])
			w.noteBroken(werr)
			n += int64(k)
			return n, werr
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// Hijack hands the connection to the handler. No status will be sent
// through the server, so in the automatic modes the scope is rolled back
// now; in Manual mode it is the handler's until it returns. A handler that
// hijacks commits first what it means to keep.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.state == streaming || (w.held != nil && (w.status != 0 || len(w.held.body) > 0)) {
		w.stream() // what the handler wrote goes out first, as net/http would flush it
	}
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return conn, brw, err
	}
	w.state = hijacked
	if w.h.cfg.commit != nil {
		_ = w.scope.Remove() // errors reach the sessions' teardown hooks
	}
	return conn, brw, nil
}

// The variants of the wrapper offer exactly the optional interfaces of
// the underlying writer, so that a type assertion for http.Flusher or
// http.Hijacker answers as it would without the middleware. A writer that
// can flush or hijack only through Unwrap (another middleware's wrapper
// further out) counts as able to: otherwise http.ResponseController would
// unwrap past this one and flush or hijack around the held response.
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
func newWriter(w http.ResponseWriter, base writer) (*writer, http.ResponseWriter) {
	base.ResponseWriter = w
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
		}{w: base}
		v.rw.basicWriter, v.rw.flusher, v.rw.Hijacker, v.rw.ReaderFrom = &v.w, &v.w, &v.w, &v.w
		return &v.w, &v.rw
	case f && !h && !rf: // HTTP/2, httptest.ResponseRecorder
		v := &struct {
			w  writer
			rw struct {
				basicWriter
				flusher
			}
		}{w: base}
		v.rw.basicWriter, v.rw.flusher = &v.w, &v.w
		return &v.w, &v.rw
	}
	// The other combinations are rare: two allocations are fine.
	sw := new(writer)
	*sw = base
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
