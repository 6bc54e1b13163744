// Package scopedpgx gives every scope its own pgx transaction, or its own
// pinned connection, from a [pgxpool.Pool], for the scoped package: begun
// on first use, ended exactly once with the scope, and never leaving a
// connection acquired, even when the request's context is cancelled in
// the middle of a query.
//
// # Usage
//
// Create the ScopedSession once, next to the pool:
//
//	pool, err := pgxpool.New(ctx, dsn)
//	...
//	txs := scopedpgx.NewTx(pool, pgx.TxOptions{})
//
// With scopedhttp every request is a scope, committed when it answers 2xx
// (in Autocommit mode) and rolled back otherwise:
//
//	mw := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))
//
//	func getUser(w http.ResponseWriter, r *http.Request) {
//		tx, err := scoped.Current[pgx.Tx](r.Context()) // or txs.Current
//		...
//		tx.QueryRow(r.Context(), "SELECT name FROM users WHERE id = $1", id).Scan(&name)
//	}
//
// Elsewhere (a job, a test), begin and end the scope yourself:
//
//	ctx, scope := scoped.Begin(ctx)
//	defer scope.Remove()        // rolls back whatever was not committed
//	tx, err := txs.Current(ctx) // BEGIN happens here, not before
//	...
//	return scope.Commit()
//
// [NewConn] does the same for a *pgxpool.Conn held for the whole scope,
// for work that needs session state: SET, temporary tables, advisory
// locks, LISTEN. When the scope ends the session is reset with DISCARD ALL
// before the connection goes back to the pool, so nothing one scope set
// reaches the next user of that connection.
//
// [Tx] and [Conn] are the bare factories for [scoped.New], for those who
// want to choose every teardown themselves.
//
// # Contexts
//
// The transaction is begun with the scope's context: acquiring a
// connection and BEGIN give up at its deadline or cancellation. After
// that, pgx does not tie the transaction to any context (database/sql
// does); each query uses the context it is given, and the transaction
// lives as long as its scope. Teardown runs with a context that is never
// cancelled, so a request whose client went away still rolls back.
//
// # Ending
//
// [scoped.Scope.Commit] commits; everything else rolls back with
// [Rollback], which does not count a transaction its handler already
// committed or rolled back by hand (pgx says [pgx.ErrTxClosed]) as a
// failure, nor one whose connection pgx closed after a cancelled query. A
// commit is stricter: finding the transaction closed, it cannot tell a
// hand commit from a hand rollback or a failed commit, so it fails. In
// Autocommit mode, then, a handler does not call tx.Commit itself (the
// middleware's commit would fail and answer 500); in Manual mode it
// commits with [scoped.ScopedSession.Commit]. When the scope's Remove or
// Commit returns, its connection is back in the pool, or out of it and
// closed if its session could not be reused (pgxpool would close such a
// connection in the background, holding a slot of the pool meanwhile).
//
// # Concurrency
//
// A pgx.Tx, like the connection under it, serves one call at a time. The
// transactions of [Tx] and [NewTx] enforce it: a call made while another
// call on the same transaction runs fails, and ending the transaction
// waits for a running call to return, so a scope ended on another
// goroutine (the safety net of [scoped.Begin], fired by a cancelled
// context) never races a query in flight, and a call after the end returns
// [pgx.ErrTxClosed] instead of reaching a connection that already serves
// someone else. Their Conn and LargeObjects methods are pgx's escape
// hatches and bypass that.
//
// A *pgxpool.Conn cannot be guarded that way, so [NewConn] creates its
// ScopedSession [scoped.WithoutSafetyNet]: a scope holding a pinned
// connection has no safety net, and must be ended with defer, on the
// goroutine that uses the connection.
package scopedpgx
