package scopedsql

import (
	"bufio"
	"net"
	"net/http"
)

// ReadYourWrites returns an HTTP middleware that carries one client's
// read-your-writes position ([WithReadAfter]) from one request to its
// next in the cookie named cookie: the units of work of a request read
// from a replica only if it has replayed every write the client's earlier
// requests committed, and the response sets the cookie to the position
// after the writes this request committed, if any. The cookie's value is
// an LSN, as scopedpgx.ReadYourWrites writes it: a service can move from
// one driver to the other, or use both, with the same cookie.
//
// It goes outside the middleware that begins the scope (scopedhttp's),
// so that the request's commit has happened when the response starts,
// as scopedhttp's commit modes ensure. The cookie is set when the
// response's header is written: a handler that commits after it has
// started streaming its response does not move the client's position.
// The cookie is HttpOnly, SameSite=Lax, for path /, and lasts the browser
// session. A request that carries a position the replicas have replayed
// costs its reads one round trip more on the replica (the check, see
// [WithReplicas]); one whose units write costs one more on the primary
// (the position's read, see [WithReadAfter]).
func ReadYourWrites(cookie string) func(http.Handler) http.Handler {
	if cookie == "" || (&http.Cookie{Name: cookie, Value: "0/0"}).Valid() != nil {
		panic("scopedsql: ReadYourWrites with an invalid cookie name " + cookie)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var from Position
			if c, err := r.Cookie(cookie); err == nil {
				from, _ = ParsePosition(c.Value) // a cookie that is not a position is none
			}
			ctx := WithReadAfter(r.Context(), from)
			pw := &positionWriter{ResponseWriter: w, cell: positionsOf(ctx), name: cookie, from: from}
			next.ServeHTTP(pw, r.WithContext(ctx))
			pw.setCookie() // a handler that wrote nothing
		})
	}
}

// positionWriter sets the position cookie as the response's header goes.
type positionWriter struct {
	http.ResponseWriter
	cell *positions
	name string
	from Position
	sent bool
}

func (w *positionWriter) setCookie() {
	if w.sent {
		return
	}
	w.sent = true
	if p := w.cell.load(); p > w.from {
		http.SetCookie(w.ResponseWriter, &http.Cookie{Name: w.name, Value: p.String(), Path: "/",
			HttpOnly: true, SameSite: http.SameSiteLaxMode})
	}
}

func (w *positionWriter) WriteHeader(code int) {
	if code >= 200 { // a 1xx leaves before the commit
		w.setCookie()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *positionWriter) Write(b []byte) (int, error) {
	w.setCookie()
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (w *positionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush and Hijack are those of the writer underneath, for handlers that
// type-assert http.Flusher or http.Hijacker.
func (w *positionWriter) Flush() {
	w.setCookie()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *positionWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}
