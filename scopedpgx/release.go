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
func (h *home) giveBack(c *pgxpool.Conn) {
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
	// A connection pgx closed after a cancelled query finishes closing in
	// the background; wait for it, as pgxpool's destructor does.
	select {
	case <-pc.PgConn().CleanupDone():
	case <-ctx.Done():
	}
}
