package scopedpgx

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// closeTimeout bounds closing a connection that cannot go back to its
// pool, as pgxpool bounds its own closes.
const closeTimeout = 15 * time.Second

// home is what a factory keeps of its pool to give connections back.
type home struct {
	beforeClose func(*pgx.Conn) // the pool's BeforeClose hook, read once
}

func newHome(pool *pgxpool.Pool) *home {
	return &home{beforeClose: pool.Config().BeforeClose}
}

// reusable reports whether c's session can serve another user as it is:
// open, not busy with unread rows, not inside a transaction.
func reusable(c *pgx.Conn) bool {
	return !c.IsClosed() && !c.PgConn().IsBusy() && c.PgConn().TxStatus() == 'I'
}

// giveBack ends a scope's hold on c before returning: c goes back to the
// pool, or, if its session cannot be reused, it leaves the pool and is
// closed. pgxpool's Release would destroy such a connection too, but in
// the background, so it would still count as acquired, and hold a slot of
// the pool, after the scope had ended. The pool's BeforeClose hook still
// sees it; its health check tops MinConns up on its next period.
func (h *home) giveBack(c *pgxpool.Conn) { h.giveBackWaiting(c, true) }

// giveBackWaiting is giveBack, waiting for a closed connection to finish
// closing only if wait. pgx's background close of a failed connection
// sends a cancel request on a new connection first, which takes up to 15
// seconds when the server cannot be reached: a commit about to resolve
// its outcome within a bound must not wait for it.
func (h *home) giveBackWaiting(c *pgxpool.Conn, wait bool) {
	if reusable(c.Conn()) {
		c.Release()
		return
	}
	pc := c.Hijack()
	if h.beforeClose != nil {
		h.beforeClose(pc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = pc.Close(ctx)
	if !wait {
		return
	}
	// A connection pgx closed after a cancelled query finishes closing in
	// the background; wait for it, as pgxpool's destructor does.
	select {
	case <-pc.PgConn().CleanupDone():
	case <-ctx.Done():
	}
}
