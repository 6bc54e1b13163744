package scopedpgx

import (
	"net/http"

	"github.com/go-scoped/scoped/shared/readafter"
)

// ReadYourWrites returns an HTTP middleware that carries one client's
// read-your-writes position ([WithReadAfter]) from one request to its
// next in the cookie named cookie: the units of work of a request read
// from a replica only if it has replayed every write the client's earlier
// requests committed, and the response sets the cookie to the position
// of the writes this request committed, if any. Its cookie and
// the position it puts in the request's context are scopedsql's
// ReadYourWrites' too: the units of both drivers read after the position
// and raise it, so a service can move from one driver to the other, or
// use both.
//
// It goes outside the middleware that begins the scope (scopedhttp's),
// so that the request's commit has happened when the response starts,
// as scopedhttp's commit modes ensure. The cookie is set when the
// response's header is written: a handler that commits after it has
// started streaming its response does not move the client's position.
// The cookie is HttpOnly, SameSite=Lax, for path /, and lasts the browser
// session; a position the replicas have replayed costs nothing more than
// none.
func ReadYourWrites(cookie string) func(http.Handler) http.Handler {
	if !readafter.ValidCookieName(cookie) {
		panic("scopedpgx: ReadYourWrites with an invalid cookie name " + cookie)
	}
	return readafter.Cookie(cookie)
}
