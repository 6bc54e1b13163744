// Package chirouter shows scopedhttp under github.com/go-chi/chi: the
// middleware is a plain func(http.Handler) http.Handler, so it goes into
// r.Use for every route or r.With for some, and chi's URL parameters reach
// the handler unchanged. The tests run it on a real server.
//
// It lives in the examples module so that chi never enters the module
// graph of a program that imports scoped.
package chirouter
