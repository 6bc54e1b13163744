// Package scopedriver runs River jobs (github.com/riverqueue/river) in
// units of work of package scoped, and enqueues jobs in the caller's unit.
//
// The worker middleware gives each job's Work a scope of its own, committed
// when Work returns nil and rolled back when it returns an error or panics,
// River then retrying the job as usual, unless part of the job's work was
// already saved (a session committed by hand, a partial commit): another
// attempt would save it again, so the job is cancelled (river.JobCancel):
//
//	txs := scopedpgx.NewTx(pool, pgx.TxOptions{}) // River's own pool, READ COMMITTED
//	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
//		Workers:    workers,
//		Middleware: []rivertype.Middleware{scopedriver.NewMiddleware(scopedriver.Bind(txs), scopedriver.CompleteTx(txs))},
//		...
//	})
//
//	func (w *SendWorker) Work(ctx context.Context, job *river.Job[SendArgs]) error {
//		tx, err := scoped.Current[pgx.Tx](ctx)
//		...
//		return err // nil commits; an error rolls back and River retries
//	}
//
// [CompleteTx] marks the job completed inside its own transaction, so its
// writes and its completion commit together: a worker that dies after the
// commit never runs the job again. Run job transactions at READ COMMITTED:
// at SERIALIZABLE the completion's reads of river_job make concurrent jobs
// fail with serialization failures unrelated to their own data.
//
// [Insert] and [InsertMany] are the transactional outbox: they enqueue a
// job in the transaction of the caller's unit (a request's, a job's, a
// scoped.Run's), so the job exists if and only if the unit commits, even
// if the process dies right after the commit, where a scoped.OnCommit hook
// would be lost. Outside a unit they fail with scoped.ErrNoScope rather
// than enqueue on the pool.
//
// The guide: docs/river.md in the repository.
package scopedriver
