package scopedpgx

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NewConn returns a ScopedSession of connections acquired from pool, one
// per scope and pinned to it: every Current in the scope gets the same
// connection, so session state (SET, temporary tables, advisory locks,
// LISTEN) lasts for the scope. Acquiring gives up when the scope's context
// is done (for a session keyed with [scoped.WithScopeFunc], when the
// context of the Current that creates it is). The sessions are reset when the scope ends, so that nothing one
// scope set on its connection reaches the next user of that pooled
// connection.
//
// The reset is DISCARD ALL, what PgBouncer runs between clients: it resets
// every setting changed with SET (application_name, search_path, role,
// set_config values used for row-level security), drops temporary tables,
// releases advisory locks and stops LISTEN; the notifications pgx had
// already read into its client-side buffer, which WaitForNotification
// would hand to the next user first, are dropped with it. It also deallocates prepared
// statements, so pgx's statement caches are cleared with it (by
// [pgx.Conn.DeallocateAll]) and the next user prepares again rather than
// naming statements that no longer exist. That costs two round trips per
// scope that used its connection. pgxpool's AfterRelease hook stays the
// application's own, and runs after the reset.
//
// A connection that is closed, busy with unread rows, or inside a
// transaction nobody ended is not reset but closed, which ends its session
// on the server. A connection whose reset fails is closed as well, since
// its state is unknown, and the error is the teardown's. Either way the
// connection no longer counts as acquired when the scope's Remove returns
// (unless the pool has an AfterRelease hook, which pgxpool runs in the
// background for connections that go back).
//
// opts come after the default teardown and may override it, for example
// scoped.WithClose with a function that only calls Release, when no code
// ever changes session state.
//
// NewConn takes only scoped.Options, checked by the compiler: none of this
// package's options concern a pinned connection.
func NewConn(pool *pgxpool.Pool, opts ...scoped.Option) *scoped.ScopedSession[*pgxpool.Conn] {
	if pool == nil {
		panic("scopedpgx: NewConn with nil pool")
	}
	h := newHome(pool)
	all := make([]scoped.Option, 0, 2+len(opts))
	// A *pgxpool.Conn cannot be guarded like NewTx's transactions, so the
	// scope's safety net must never release it under a running query.
	all = append(all, scoped.WithClose(h.resetAndRelease), scoped.WithoutSafetyNet())
	return scoped.New(acquireBounded(pool), append(all, opts...)...)
}

// resetAndRelease is NewConn's teardown.
func (h *home) resetAndRelease(ctx context.Context, c *pgxpool.Conn) error {
	pc, ok := connOf(c)
	if !ok {
		return errReleasedByHand
	}
	if !reusable(pc) {
		h.giveBack(c) // closes it
		return nil
	}
	err := pc.DeallocateAll(ctx)
	if err == nil {
		_, err = pc.Exec(ctx, "DISCARD ALL")
	}
	if err != nil {
		_ = pc.Close(ctx) // so that giveBack does not reuse it
		h.giveBack(c)
		return fmt.Errorf("scopedpgx: reset pinned connection: %w", err)
	}
	dropNotifications(pc)
	h.giveBack(c)
	return nil
}

// errReleasedByHand is NewConn's teardown error for a connection that the
// scope's code released (or hijacked) itself.
var errReleasedByHand = errors.New("scopedpgx: pinned connection released (or hijacked) by hand before " +
	"its scope ended, so it went back to the pool without NewConn's session reset and its session state " +
	"(SET, temporary tables, advisory locks) may reach its next user; do not Release a connection from " +
	"NewConn, the scope's end does")

// connOf returns c's connection, or false if c was released or hijacked
// already: pgxpool's Conn then has none, and its Conn method panics.
func connOf(c *pgxpool.Conn) (pc *pgx.Conn, ok bool) {
	defer func() {
		if recover() != nil {
			pc, ok = nil, false
		}
	}()
	return c.Conn(), true
}

// dropNotifications empties pgx's client-side buffer of notifications,
// which DISCARD ALL cannot reach. pgx has no call for it, but
// WaitForNotification returns a buffered notification first and, with a
// context already done and the buffer empty, returns at once without
// reading the connection. After DISCARD ALL's reply no notification of
// this session's channels can follow, so the buffer stays empty.
func dropNotifications(pc *pgx.Conn) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for {
		if n, _ := pc.WaitForNotification(done); n == nil {
			return
		}
	}
}
