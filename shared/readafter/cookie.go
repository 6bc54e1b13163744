package readafter

import (
	"bufio"
	"net"
	"net/http"
)

// ValidCookieName reports whether name can name the cookie of [Cookie].
func ValidCookieName(name string) bool {
	return name != "" && (&http.Cookie{Name: name, Value: "0/0"}).Valid() == nil
}

// Cookie returns the HTTP middleware of scopedpgx's and scopedsql's
// ReadYourWrites: it reads the client's position from the cookie named
// name into the request's context ([With]), and sets the cookie to the
// position the request's commits raised it to, if they did, as the
// response's header is written. The cookie is HttpOnly, SameSite=Lax, for
// path /, and lasts the browser session; a cookie that is not a position
// is none. name must be valid ([ValidCookieName]): each caller panics
// first, with its own package's prefix.
func Cookie(name string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var from Position
			if c, err := r.Cookie(name); err == nil {
				from, _ = Parse(c.Value)
			}
			ctx := With(r.Context(), from)
			pw := &positionWriter{ResponseWriter: w, cell: CellOf(ctx), name: name, from: from}
			next.ServeHTTP(pw, r.WithContext(ctx))
			pw.setCookie() // a handler that wrote nothing
		})
	}
}

// positionWriter sets the position cookie as the response's header goes.
type positionWriter struct {
	http.ResponseWriter
	cell *Cell
	name string
	from Position
	sent bool
}

func (w *positionWriter) setCookie() {
	if w.sent {
		return
	}
	w.sent = true
	if p := w.cell.Load(); p > w.from {
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
