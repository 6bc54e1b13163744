package scopedpgx

import (
	"context"
	"fmt"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Conn returns a factory that acquires one connection from pool per scope,
// for [scoped.New]: every Current in the scope gets the same connection,
// so session state (SET, temporary tables, advisory locks, LISTEN) lasts
// for the scope. Acquiring gives up when the scope's context is done.
// Prefer [NewConn], which also resets the session before the connection
// goes back to the pool.
func Conn(pool *pgxpool.Pool) func(ctx context.Context) (*pgxpool.Conn, error) {
	if pool == nil {
		panic("scopedpgx: Conn with nil pool")
	}
	return pool.Acquire
}

// NewConn returns a ScopedSession of connections pinned to their scope, as
// [Conn] acquires them, ended with [Release]: what one scope set on its
// connection never reaches the next user of that pooled connection. opts
// come after that default and may override it, for example
//
//	scoped.WithClose(func(_ context.Context, c *pgxpool.Conn) error { c.Release(); return nil })
//
// to skip the reset when no code ever changes session state.
func NewConn(pool *pgxpool.Pool, opts ...scoped.Option) *scoped.ScopedSession[*pgxpool.Conn] {
	all := make([]scoped.Option, 0, 1+len(opts))
	all = append(all, scoped.WithClose(Release))
	return scoped.New(Conn(pool), append(all, opts...)...)
}

// Release resets the session of a pinned connection and gives the
// connection back to its pool; it is the teardown [NewConn] installs with
// [scoped.WithClose].
//
// The reset is DISCARD ALL, what PgBouncer runs between clients: it resets
// every setting changed with SET (application_name, search_path, role,
// set_config values used for row-level security), drops temporary tables,
// releases advisory locks and stops LISTEN. It also deallocates prepared
// statements, so pgx's statement caches are cleared with it (through
// [pgx.Conn.DeallocateAll]) and the next user re-prepares instead of
// naming statements that no longer exist. That costs two round trips per
// scope, and the re-preparing.
//
// A connection that is closed, busy with unread rows, or inside a
// transaction nobody ended is not reset: the pool closes it instead of
// reusing it, which ends its session on the server. If the reset fails, the
// connection is closed too, since its state is unknown, and the error is
// returned.
func Release(ctx context.Context, c *pgxpool.Conn) error {
	pc := c.Conn()
	if pc.IsClosed() || pc.PgConn().IsBusy() || pc.PgConn().TxStatus() != 'I' {
		c.Release() // pgxpool destroys such a connection
		return nil
	}
	err := pc.DeallocateAll(ctx)
	if err == nil {
		_, err = pc.Exec(ctx, "DISCARD ALL")
	}
	if err != nil {
		_ = pc.Close(ctx) // Release then destroys it
		c.Release()
		return fmt.Errorf("scopedpgx: reset pinned connection: %w", err)
	}
	c.Release()
	return nil
}
