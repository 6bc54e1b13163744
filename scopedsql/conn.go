package scopedsql

import (
	"database/sql"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/sqlconn"
)

// NewConn returns a ScopedSession of connections pinned to their scope, as
// [Conn] takes them, that the scope's safety net leaves to the scope's
// end: scoped.New(Conn(db), scoped.WithoutSafetyNet()), with a teardown
// that resets the connection's session first (see below).
//
// The teardown of a pinned connection, scoped's default for *sql.Conn,
// never waits for what the scope's code left open on it.
// [database/sql.Conn.Close] would: it waits for every query still running
// on the connection, every *sql.Rows not closed and every *sql.Tx begun on
// it and not ended, and database/sql ends those only when the context of
// their query or BeginTx is done: with a request's context, after the
// handler returned; with context.Background, never. The teardown instead
// looks, without waiting, whether anything is still open on the
// connection. If nothing is, the connection goes back to the pool as Close
// returns it. If something is, the scope's Remove returns at once with an
// error wrapping [ErrConnInUse] that says so, and the connection is
// discarded instead of pooled: its driver connection is closed, which ends
// its server session (the server rolls back a transaction left open and
// releases its locks), and the pool forgets it. database/sql itself lets
// go of the *sql.Conn only when the leftover ends (its context is done, or
// the code holding it closes it): until then it counts as in use in
// [database/sql.DBStats] and one goroutine waits for it, never longer than
// the leftover lives. When the scope's context has already ended (the
// client left), a connection found in use is discarded without an error:
// what holds it is most likely the query or Rows that the cancellation is
// ending.
//
// The look is exact for what was opened before the scope ended. A query
// started on the connection by another goroutine while the scope is ending
// (using a session after its scope ended) can slip in after the look; the
// connection then goes back to the pool once that query returns, as Close
// does.
//
// The connection goes back to the pool with none of its scope's session
// state (SET ROLE, SET, search_path, temporary tables, advisory locks,
// prepared statements), so that the next scope never inherits another
// tenant's role. On PostgreSQL through lib/pq the teardown sends
// DISCARD ALL first (a round trip per scope that pinned a connection); a
// connection whose reset fails is discarded. Statements prepared with
// (*sql.DB).Prepare that ran on the connection are deallocated on the
// server too, so they fail there afterwards: prepare on the pinned
// connection, or pass [WithoutSessionReset]. Other drivers are not reset
// in place: go-sql-driver/mysql sends no COM_RESET_CONNECTION, and MySQL
// and MariaDB have no statement that resets a session, so the connection
// is closed instead of pooled, and the next scope dials a new one. A scope
// that leaves no session state behind says so with [WithoutSessionReset],
// and its connection is pooled as it is.
//
// Without a safety net, a connection whose request's client went away
// mid-query goes back to the pool when the handler has returned and the
// scope ends, rather than being ended on the net's goroutine while the
// query that the cancellation is stopping still holds it, which discards a
// healthy connection. End the scope with defer scope.Remove(), as always.
// opts come after NewConn's own and may override them.
func NewConn(db *sql.DB, opts ...scoped.Option) *scoped.ScopedSession[*sql.Conn] {
	all := make([]scoped.Option, 0, 2+len(opts))
	all = append(all, scoped.WithoutSafetyNet(), scoped.WithClose(resetClose(resetOf(db))))
	return scoped.New(Conn(db), append(all, opts...)...)
}

// CloseConn closes c as [NewConn]'s teardown does: back to the pool if
// nothing is open on it, otherwise discarded, without waiting, with an
// error wrapping [ErrConnInUse]. A c closed before returns an error
// wrapping [database/sql.ErrConnDone], as Close does; database/sql closes
// a *sql.Conn itself when a transaction begun on it is rolled back because
// its context was cancelled. It is also scoped's default teardown for
// *sql.Conn sessions.
func CloseConn(c *sql.Conn) error { return sqlconn.Close(c) }
