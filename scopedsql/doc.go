// Package scopedsql provides database/sql sessions for package scoped:
// a transaction or a pinned connection per scope, and named engines opened
// from configuration. It works with any driver; it is tested against
// PostgreSQL (github.com/lib/pq) and MariaDB (github.com/go-sql-driver/mysql).
//
// # Usage
//
// Wrap a factory in a scoped.ScopedSession once, at start-up:
//
//	db, err := sql.Open("postgres", dsn)
//	...
//	txs := scoped.New(scopedsql.Tx(db, nil))
//
// Then, in each request or job (package scopedhttp does this per request):
//
//	ctx, scope := scoped.Begin(ctx)
//	defer scope.Remove()         // rolls back whatever was not committed
//	tx, err := txs.Current(ctx)  // BEGIN happens here, on first use only
//	...
//	return scope.Commit()
//
// [NewConn] pins one connection per scope instead of a transaction, for
// SET, advisory locks and temporary tables; its teardown never waits for
// an unclosed *sql.Rows or a transaction left open on the connection, but
// discards the connection and says so ([ErrConnInUse]).
//
// # Per-unit setup and options
//
// [NewTx] runs [WithSetup] functions right after BEGIN, once per
// transaction, before Current returns it: row-level security
// (SELECT set_config('app.tenant_id', $1, true)), SET LOCAL ROLE,
// [StatementTimeout]. A failing setup fails Current with its error and
// rolls back (fail closed). Each setup statement is a round trip of its
// own; scopedpgx sends them with BEGIN and the first statement instead.
// [WithTxOptions] (read-only, isolation level) and [WithDeferrable] set a
// unit's transaction options on the context it begins with; set inside a
// scope they are [ErrTxOptionsLate]. scopedhttp.ReadOnlySafeMethods makes
// GET and HEAD units read-only in one line.
//
// # Outcomes and faults
//
//   - A BEGIN that fails because the pooled connection was already dead
//     (the server restarted or terminated idle backends; lib/pq reports it
//     as a *net.OpError, io.EOF or SQLSTATE 57P01, which database/sql does
//     not retry) is retried on another connection: it began nothing.
//   - [VerifiedCommit] (PostgreSQL) turns a COMMIT that lost its
//     connection into its real outcome, asked of the server, at the cost of
//     one round trip per commit; what stays unknown wraps
//     scoped.ErrCommitUnknown.
//   - [Retryable] is the classifier for scoped.WithRetry: serialization
//     failures and deadlocks.
//   - database/sql's Commit and Rollback take no context. With
//     scoped.WithTeardownTimeout the scope stops waiting for them after
//     the bound (a commit is then reported with scoped.ErrCommitUnknown),
//     but the call itself goes on, and holds its connection, until the
//     driver returns. Only the driver can bound that: go-sql-driver/mysql's
//     readTimeout and writeTimeout DSN parameters end a read or write that
//     takes too long. lib/pq has no such parameter (connect_timeout bounds
//     only the dial and startup, and it has no tcp_user_timeout or
//     keepalives parameters): give pq.NewConnector a Dialer whose
//     net.Dialer sets KeepAlive and, on Linux, TCP_USER_TIMEOUT, which
//     ends a connection to a dead or unreachable peer, though not one to a
//     proxy or server that is alive but stops answering.
//
// # Engines
//
// [Open] opens several named pools from configuration, each overlaid on
// shared defaults, pings them all, and closes them all with one
// [Engines.Close]. A per-engine factory is one call away:
//
//	engines, err := scopedsql.Open(ctx,
//		scopedsql.EngineConfig{Driver: "postgres", MaxOpenConns: 20},
//		map[string]scopedsql.EngineConfig{
//			"default": {DSN: primaryDSN},
//			"reports": {DSN: replicaDSN, TxOptions: &sql.TxOptions{ReadOnly: true}},
//		})
//	...
//	defer engines.Close()
//	reports := scoped.New(engines.Tx("reports"))
//
// # Contexts and goroutines
//
// The transaction of [Tx] is begun with the scope's context, which bounds
// the wait for a pooled connection, the dial and the BEGIN. After that,
// cancelling the context does not end the transaction behind the scope's
// back: the scope ends it, once, as it ends every session, with a context
// that is not cancelled. A request whose client went away is rolled back
// by the scope's safety net (or its deferred Remove) with a plain ROLLBACK,
// and its connection goes back to the pool in good health. In a scope
// with a safety net, the net's own watch on the scope's context bounds the
// begin too, so the bound costs no allocation of its own; elsewhere (a
// scope without a net, the factory called directly) the factory watches
// the context itself.
//
// What this cannot avoid: database/sql starts a goroutine per transaction
// (Tx.awaitDone, in DB.beginDC), whatever context it is given, and it ends
// when the transaction is committed or rolled back; lib/pq also watches the
// BeginTx context for the life of the transaction whenever that context can
// be cancelled. Neither goroutine acts on the request's cancellation here.
// Statements are still cancelled by the contexts they are given
// (tx.ExecContext(ctx, ...)), as the driver implements it.
//
// # Concurrency
//
// The factories and [Engines] are safe for concurrent use. A *sql.Tx is
// safe for concurrent use, but its statements run one at a time on its one
// connection.
package scopedsql
