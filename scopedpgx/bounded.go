package scopedpgx

import (
	"context"
	"fmt"

	"github.com/go-scoped/scoped/shared/bound"
	"github.com/jackc/pgx/v5/pgxpool"
)

// bounded returns the context a factory waits for its connection with,
// and the function that ends the wait's bound, returning why it cut the
// wait short (nil if it did not). A scope's factory context is the
// scope's, cancelled with it: it is returned as it is. A keyed session's
// ([scoped.WithScopeFunc]) is the caller's values without its
// cancellation, as the session outlives the caller, so waiting with it
// for a pool that has no connection free would hold a caller that left
// until one frees. That context is a bound.Watcher whose Watch fires when
// the caller's context ends: the wait gets a context that ends then.
func bounded(ctx context.Context) (context.Context, func() error) {
	w, ok := ctx.(bound.Watcher)
	if !ok || ctx.Done() != nil || !w.Watches() {
		return ctx, unbounded
	}
	bctx, cancel := context.WithCancelCause(ctx)
	if !w.Watch(fire(cancel)) {
		cancel(nil)
		return ctx, unbounded
	}
	return bctx, func() error {
		defer cancel(nil)
		if cause := w.Unwatch(); cause != nil {
			return fmt.Errorf("scopedpgx: acquire: %w", cause)
		}
		return nil
	}
}

func unbounded() error { return nil }

// fire is a bound.Target that cancels a bounded context.
type fire context.CancelCauseFunc

func (f fire) Fire(err error) { f(err) }

// acquireBounded is NewConn's factory: pool.Acquire, bounded as above.
func acquireBounded(pool *pgxpool.Pool) func(context.Context) (*pgxpool.Conn, error) {
	return func(ctx context.Context) (*pgxpool.Conn, error) {
		bctx, end := bounded(ctx)
		c, err := pool.Acquire(bctx)
		if cause := end(); cause != nil {
			if err == nil {
				c.Release()
			}
			return nil, cause
		}
		return c, err
	}
}
