// Package txopts carries the transaction options of one unit of work
// (read-only, isolation level, deferrable) in the context the unit begins
// with, where scopedsql's and scopedpgx's transaction factories read them.
// One representation, so that a middleware such as scopedhttp's
// ReadOnlySafeMethods marks a unit read-only whichever of them begins its
// transaction.
//
// It is not for applications: they call scopedsql.WithTxOptions,
// scopedpgx.WithTxOptions or scopedhttp.ReadOnlySafeMethods. It is public only because
// scopedpgx is a module of its own (see package bindings).
package txopts

import (
	"context"
	"database/sql"
	"errors"

	"github.com/go-scoped/scoped"
)

// A Flag is an option that is either left to the factory's defaults or
// set on or off for the unit.
type Flag uint8

// The values of a Flag.
const (
	Unset Flag = iota // the factory's default applies
	Off
	On
)

// Options are one unit's transaction options. Zero fields are not set:
// the factory's own options apply to them.
type Options struct {
	Isolation  sql.IsolationLevel // sql.LevelDefault: not set
	ReadOnly   Flag
	Deferrable Flag // PostgreSQL: SERIALIZABLE READ ONLY DEFERRABLE
}

// Over returns o with every field that u sets replaced by u's.
func (o Options) Over(u Options) Options {
	if u.Isolation != sql.LevelDefault {
		o.Isolation = u.Isolation
	}
	if u.ReadOnly != Unset {
		o.ReadOnly = u.ReadOnly
	}
	if u.Deferrable != Unset {
		o.Deferrable = u.Deferrable
	}
	return o
}

// ErrLate is returned when options are set on a context that is already
// inside a unit of work (a scope): its transaction is begun, or will be,
// with the context its scope began with, so the options could change
// nothing and would be silently ignored.
var ErrLate = errors.New("scoped: transaction options set inside a unit of work: " +
	"set them on the context the unit begins with (before scoped.Begin or scoped.Run, " +
	"or in a middleware that runs before the one that begins the scope)")

type key struct{}

// With returns ctx carrying o over the options ctx already carries, or
// ErrLate and ctx unchanged if ctx is inside a scope.
func With(ctx context.Context, o Options) (context.Context, error) {
	if _, in := scoped.FromContext(ctx); in {
		return ctx, ErrLate
	}
	if prev, ok := From(ctx); ok {
		o = prev.Over(o)
	}
	return context.WithValue(ctx, key{}, o), nil
}

// From returns the options ctx carries.
func From(ctx context.Context) (Options, bool) {
	o, ok := ctx.Value(key{}).(Options)
	return o, ok
}
