// Package bindings holds what the middleware packages (scopedhttp,
// scopedgrpc, scopedconnect) share about their Bind options: one rule for
// which Binds may go together, one panic message, one way to apply them.
//
// It is not for applications. It is public only because scopedgrpc and
// scopedconnect are modules of their own, and Go lets no module import
// another's internal packages; like every package of the root module it
// keeps its API within a major version, so that an integration module
// built against one version of the root builds against every later one.
package bindings

import (
	"context"
	"fmt"
	"reflect"

	"github.com/go-scoped/scoped"
)

// A Binding is one Bind option: a ScopedSession and its session type.
type Binding struct {
	typ  reflect.Type // the session type S
	reg  any          // the *scoped.ScopedSession[S], to tell the same one bound twice
	bind func(context.Context) context.Context
}

// Of returns the Binding of r. r must not be nil: each caller panics
// first, with its own package's prefix.
func Of[S any](r *scoped.ScopedSession[S]) Binding {
	return Binding{
		typ:  reflect.TypeFor[S](),
		reg:  r,
		bind: func(ctx context.Context) context.Context { return scoped.Bind(ctx, r) },
	}
}

// Add returns list with b appended. The same ScopedSession bound twice is
// harmless and kept once. Two different ScopedSessions of one session
// type panic, with pkg (the caller's package name) as the prefix: the
// package-level [scoped.Current] could find only one of them, and the
// mistake is best found when the middleware is built, not by a handler
// that silently gets the other database.
func Add(pkg string, list []Binding, b Binding) []Binding {
	for _, o := range list {
		if o.typ != b.typ {
			continue
		}
		if o.reg == b.reg {
			return list // the same ScopedSession twice: harmless
		}
		panic(fmt.Sprintf("%s: two Bind options for session type %v: scoped.Current[%v] can find only one of them. "+
			"Give each database its own session type (type ordersTx struct{ *sql.Tx }, with scoped.WithCommit and "+
			"scoped.WithRollback), or bind one and call the others' ScopedSession.Current(ctx) directly: "+
			"every ScopedSession works in the request's scope without Bind", pkg, b.typ, b.typ))
	}
	return append(list, b)
}

// Apply returns ctx with every Binding of list bound, as [scoped.Bind]
// does.
func Apply(ctx context.Context, list []Binding) context.Context {
	for _, b := range list {
		ctx = b.bind(ctx)
	}
	return ctx
}
