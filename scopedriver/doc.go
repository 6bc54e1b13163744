// Package scopedriver runs River jobs (github.com/riverqueue/river) in
// scopes of the scoped package: each job's Work gets a scope of its own,
// committed when Work returns nil and rolled back when it returns an error
// or panics, River then retrying the job as usual.
//
// # Usage
//
// One ScopedSession of transactions on River's own pool, one middleware
// for the client:
//
//	pool, err := pgxpool.New(ctx, dsn)
//	...
//	txs := scopedpgx.NewTx(pool, pgx.TxOptions{})
//	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
//		Queues:     map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 10}},
//		Workers:    workers,
//		Middleware: []rivertype.Middleware{scopedriver.NewMiddleware(scopedriver.Bind(txs), scopedriver.CompleteTx(txs))},
//	})
//
// A worker finds the job's transaction with [scoped.Current] and never
// commits it: the middleware does, when Work returns nil.
//
//	func (w *SendWorker) Work(ctx context.Context, job *river.Job[SendArgs]) error {
//		tx, err := scoped.Current[pgx.Tx](ctx)
//		if err != nil {
//			return err
//		}
//		_, err = tx.Exec(ctx, "INSERT INTO sent (id) VALUES ($1)", job.Args.ID)
//		return err // nil commits; an error rolls back and River retries
//	}
//
// # Transactional completion
//
// Without [CompleteTx], River records a job completed after Work returned
// and the scope committed: a worker that dies in between (killed, out of
// memory, power lost) leaves the job running, River's rescuer retries it
// later, and it runs a second time although its work was saved. With
// CompleteTx the job is marked completed inside the job's own transaction
// (River's JobCompleteTx), so its writes and its completion commit
// together: a death after the commit never runs the job again, a death
// before it leaves nothing of the attempt. That holds for the writes made
// in that one transaction; a job that also writes elsewhere (another
// database, an API) must make those writes idempotent, as with any queue.
//
// Run job transactions at READ COMMITTED, PostgreSQL's default and
// River's (pgx.TxOptions{} as above). With CompleteTx every job's
// transaction also reads and updates its row of river_job, next to the
// rows River's producers fetch and other workers complete. At
// SERIALIZABLE those reads take predicate locks on river_job's pages,
// and concurrent jobs then fail, in the completion or at COMMIT, with
// serialization failures (40001, "read/write dependencies among
// transactions") that have nothing to do with the jobs' own data: 6 to
// 10 of 22 concurrent jobs failed an attempt so in this package's
// TestJobTransactionIsolation, none at READ COMMITTED. Each one costs a River attempt
// (retried with River's backoff, counted against MaxAttempts), not a
// quick retry. At REPEATABLE READ the completion fails the same way when
// River touched the row after the job's snapshot. READ COMMITTED is safe
// for the completion: the worker holding the job is the only one that
// completes it. A job whose own logic needs SERIALIZABLE should expect
// those failures (set MaxAttempts accordingly) or move that logic into a
// job of its own.
//
// # Transactional outbox
//
// [Insert] and [InsertMany] enqueue River jobs in the transaction of the
// caller's unit of work (an HTTP request's, a job's, a [scoped.Run]'s),
// with River's InsertTx: the job exists if and only if the unit commits,
// and a nested unit that rolls back takes its jobs with it. They are the
// crash-safe twin of [scoped.OnCommit]: a hook is lost if the process
// dies right after the commit, an enqueued job is not. Outside a unit
// they fail with [scoped.ErrNoScope] instead of enqueuing on the pool.
//
// # Unit hooks
//
// The middleware commits a job's scope before Work returns to River, so
// hooks a worker registers with [scoped.OnCommit] run after the job's
// commit (with [CompleteTx], the job is completed by then), and
// [scoped.OnRollback] hooks when the job's work was rolled back, on the
// job's goroutine, before River records the attempt.
//
// # Errors
//
// An error of Work, or of the completion, rolls the scope back and goes
// to River, joined with the rollback's error if it failed; River's own
// error kinds (river.JobSnooze, river.JobCancel) keep working. A failed
// commit is returned too, so River retries, except when every session
// committed and only a close failed afterwards
// ([scoped.ErrCommittedCloseFailed]): the work is saved, the job is done.
// Every teardown error also reaches the sessions' teardown error hook.
//
// The middleware ends each scope itself, on the job's goroutine, so its
// scopes have no safety net (see [scoped.BeginWithoutSafetyNet]): a job
// River cancels sees its queries fail, and the scope then rolls back when
// Work returns.
package scopedriver
