package scopedhttp

import (
	"net/http"

	"github.com/go-scoped/scoped/shared/txopts"
)

// ReadOnlySafeMethods makes the transactions of GET and HEAD requests
// read-only: it marks the request's unit of work read-only for the
// transaction factories of scopedsql and scopedpgx (as
// scopedsql.WithTxOptions does), so that a handler for a safe method that
// writes by mistake fails instead of writing. Other methods pass
// unchanged. It must run before Middleware, which begins the unit:
//
//	handler := scopedhttp.ReadOnlySafeMethods(scopedhttp.Middleware(opts...)(mux))
//
// Wrapped inside Middleware it would reach no transaction, so it panics
// there, on the first request, rather than being silently ignored.
func ReadOnlySafeMethods(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			ctx, err := txopts.With(r.Context(), txopts.Options{ReadOnly: txopts.On})
			if err != nil {
				panic("scopedhttp: ReadOnlySafeMethods must wrap Middleware, not run inside it: " + err.Error())
			}
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}
