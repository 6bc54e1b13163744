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
//	tx, err := txs.Current(ctx) // a connection now; BEGIN with the first statement
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
// # sqlc
//
// [NewDBTX] serves the DBTX interface sqlc generates for pgx/v5 (Exec,
// Query, QueryRow, and CopyFrom and SendBatch when emitted) from the
// scope's transaction inside a scope and from the pool outside one, so
// that one *Queries serves handlers, jobs and main alike:
//
//	queries := sqlcdb.New(scopedpgx.NewDBTX(pool, txs)) // sqlcdb: your generated package
//
// Inside a scope whose transaction cannot be had (the pool gave no
// connection before the scope's context ended, the scope has ended),
// nothing runs, not even on the pool, which would escape the transaction:
// the method returns why (QueryRow's row, from Scan).
//
// # Tests
//
// Package scopedpgxtest gives each test a database whose every change is
// rolled back when the test ends: scopedpgxtest.Isolate(t, pool) returns
// a database on one connection inside a transaction, which stands in for
// the pool (it is a [Querier], so NewDBTX takes it), and its NewTx stands
// in for [NewTx], with savepoints for transactions.
//
// # Round trips
//
// On a network the round trip is the cost. A transaction of [Tx] sends
// BEGIN in the same pipeline as its first statement (Exec, Query,
// QueryRow, SendBatch, or a savepoint's Begin), so BEGIN costs no round
// trip of its own, and a transaction that ran no statement sends nothing
// at all, neither BEGIN nor COMMIT. Prepare needs no BEGIN (a prepared
// statement belongs to the session); CopyFrom, LargeObjects, Conn, and
// statements with a pgx.QueryExecMode or result-format argument begin
// the transaction on their own first, as pgx does. A BEGIN that fails
// fails the first statement, and every call after it, with an error that
// says "BEGIN failed" and wraps the server's (a first statement whose
// context was already done fails alone, as in pgx: nothing was sent, and
// the next call begins the transaction); a first statement that
// fails reports its own error and leaves the transaction aborted, as in
// pgx. Tracers see the first statement as a batch. [WithEagerBegin] turns
// this off.
//
// The connection is acquired when the transaction is handed out
// (Current), not at the first statement: the factory's errors (a pool
// exhausted past the scope's deadline) stay where scoped promises them,
// at Current, and a handler that asked for a transaction is sure to get a
// connection before it does work that needs one.
//
// A BEGIN that failed because its connection was lost (terminated by the
// server, SQLSTATE 57P01, or reset while idle in the pool) changed
// nothing, so it is sent again, with its statement, on another
// connection of the pool: as often as the pool has connections (each may
// be dead, after a restart or a pg_terminate_backend storm), and once
// more.
//
// # Commits whose answer is lost
//
// When the connection fails during COMMIT, the transaction may have
// committed: pgx reports an error for work that is saved, and a client
// that retries does it twice. A transaction of [Tx] knows its id: the
// statements that run before it has one read pg_current_xact_id_if_assigned()
// in their own pipeline (no round trip), except in an aborted transaction,
// where PostgreSQL prepares nothing but the statements that end it (a
// ROLLBACK TO a savepoint then travels alone). A COMMIT whose answer is lost
// then asks pg_xact_status on another connection of the pool, for at most
// [DefaultCommitResolveTimeout] ([WithCommitResolveTimeout]): committed
// is success, aborted (or an id the restarted server has forgotten) is the
// error, and no answer in time is an error wrapping
// [scoped.ErrCommitUnknown] ("may have been saved"). After a crash the
// server hands out again the ids of transactions that never reached its
// disk, so "committed" is trusted only if the server has not checkpointed
// since the transaction began (crash recovery ends in a checkpoint;
// pg_control_checkpoint(), callable by every role unless revoked), and is
// ErrCommitUnknown otherwise. A
// transaction that wrote nothing has no id and nothing to resolve; its
// failed COMMIT is reported as pgx reports it. [WithoutVerifiedCommit]
// turns this off. The resolver cannot see everything: after a failover to
// an asynchronous replica a commit the old primary confirmed can be gone,
// and if the application itself dies between COMMIT and its answer nobody
// is told. Idempotency keys (a unique request id stored in the
// transaction) are the end-to-end answer to both.
//
// # Contexts
//
// The connection is acquired with the scope's context: acquiring gives up
// at its deadline or cancellation. BEGIN goes with the first statement
// and its context. pgx does not tie the transaction to any context
// (database/sql does); each query uses the context it is given, and the
// transaction lives as long as its scope. Teardown runs with a context that is never
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
