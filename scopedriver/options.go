package scopedriver

import (
	"context"
	"reflect"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
)

// An Option configures [NewMiddleware].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	binds    []binding
	complete *scoped.ScopedSession[pgx.Tx] // CompleteTx; nil: River completes the job itself
}

// binding is one Bind: the session type it binds, to catch a second Bind
// of the same type, and how to bind it.
type binding struct {
	typ  reflect.Type
	bind func(context.Context) context.Context
}

// Bind makes [scoped.Current] for session type S find r in workers, as
// [scoped.Bind] does for a context. Binding two ScopedSessions of the
// same session type is a mistake (the second would hide the first), so
// [NewMiddleware] panics on it.
func Bind[S any](r *scoped.ScopedSession[S]) Option {
	if r == nil {
		panic("scopedriver: Bind(nil)")
	}
	b := binding{
		typ:  reflect.TypeFor[S](),
		bind: func(ctx context.Context) context.Context { return scoped.Bind(ctx, r) },
	}
	return optionFunc(func(c *config) { c.binds = append(c.binds, b) })
}

// CompleteTx marks each job completed inside the job's transaction from
// txs (River's [river.JobCompleteTx]), after Work returned nil and before
// the scope commits, so that the job's writes and its completion are
// committed together or not at all: a worker that dies after the commit
// has completed the job, and one that dies before it has left no trace of
// the attempt. txs is typically [scopedpgx.NewTx] on River's own pool;
// the job's transaction is txs's session of the job's scope, begun for the
// completion if Work did not use it. Completion needs a River client with
// the riverpgxv5 driver (a *river.Client[pgx.Tx]).
//
// CompleteTx does not bind txs: add [Bind](txs) for workers that find
// their transaction with scoped.Current[pgx.Tx].
func CompleteTx(txs *scoped.ScopedSession[pgx.Tx]) Option {
	if txs == nil {
		panic("scopedriver: CompleteTx(nil)")
	}
	return optionFunc(func(c *config) { c.complete = txs })
}
