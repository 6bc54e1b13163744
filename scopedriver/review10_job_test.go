package scopedriver_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/go-scoped/scoped/scopedpgx/scopedpgxtest"
	"github.com/go-scoped/scoped/scopedriver"
)

type r10Args struct {
	Fail bool `json:"fail"`
}

func (r10Args) Kind() string { return "scopedriver_review10" }

// A job worked by a test with River's rivertest.Worker, in the test's own
// scope on an isolated database (scopedpgxtest): the middleware's scope is
// a child of the test's, so the job's rows and its completion (CompleteTx)
// are released into the test's unit, and the test's unit decides: rolled
// back, nothing of the job is left; a job that fails leaves none of its
// rows and none of the test's are lost.
func TestReview10JobInsideATestsIsolatedScope(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		fail, outerCommits bool
	}{{false, true}, {false, false}, {true, true}} {
		t.Run(fmt.Sprintf("fail=%v/outerCommits=%v", c.fail, c.outerCommits), func(t *testing.T) {
			t.Parallel()
			e := newSchemaEnv(t)
			db := scopedpgxtest.Isolate(t, e.pool)
			txs := db.NewTx(scoped.WithTeardownErrorHook(nil))
			w := river.WorkFunc(func(ctx context.Context, job *river.Job[r10Args]) error {
				tx, err := scoped.Current[pgx.Tx](ctx)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES ($1, 1, 1)", job.ID); err != nil {
					return err
				}
				if job.Args.Fail {
					return errors.New("fails on purpose")
				}
				return nil
			})
			cfg := &river.Config{
				Logger:     quietLogger(),
				Middleware: []rivertype.Middleware{scopedriver.NewMiddleware(scopedriver.Bind(txs), scopedriver.CompleteTx(txs))},
				Schema:     e.schema,
			}
			tw := rivertest.NewWorker(t, riverpgxv5.New(nil), cfg, w)

			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			ctx = scoped.Bind(ctx, txs)
			tx, err := txs.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES (0, 0, 0)"); err != nil {
				t.Fatal(err)
			}
			// rivertest's own statements name River's tables without the schema.
			if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+e.schema); err != nil {
				t.Fatal(err)
			}
			res, err := tw.Work(ctx, t, tx, r10Args{Fail: c.fail}, nil)
			if err == nil && c.fail {
				t.Errorf("Work of a failing job: no error")
			} else if err != nil && !c.fail {
				t.Errorf("Work: %v", err)
			}
			if res == nil {
				t.Fatal("no work result")
			}
			// A failed first attempt is retried soon: River makes it
			// available at once rather than retryable.
			wantStates := []rivertype.JobState{rivertype.JobStateCompleted}
			if c.fail {
				wantStates = []rivertype.JobState{rivertype.JobStateRetryable, rivertype.JobStateAvailable}
			}
			if !slices.Contains(wantStates, res.Job.State) {
				t.Errorf("job state %s, want one of %v", res.Job.State, wantStates)
			}
			id := res.Job.ID
			rows := func() string {
				var n, outer int
				if err := db.QueryRow(dbtest.Ctx(t), "SELECT count(*) FILTER (WHERE job_id = $1), count(*) FILTER (WHERE job_id = 0) FROM "+e.table, id).Scan(&n, &outer); err != nil {
					t.Fatal(err)
				}
				var jobs int
				if err := db.QueryRow(dbtest.Ctx(t), "SELECT count(*) FROM "+e.schema+".river_job WHERE id = $1", id).Scan(&jobs); err != nil {
					t.Fatal(err)
				}
				return fmt.Sprintf("job rows %d, test's rows %d, jobs %d", n, outer, jobs)
			}
			if got, want := rows(), fmt.Sprintf("job rows %d, test's rows 1, jobs 1", map[bool]int{false: 1, true: 0}[c.fail]); got != want {
				t.Errorf("in the test's unit after Work: %s, want %s", got, want)
			}
			if c.outerCommits {
				err = scope.Commit()
			} else {
				err = scope.Remove()
			}
			if err != nil {
				t.Fatal(err)
			}
			want := "job rows 0, test's rows 0, jobs 0"
			if c.outerCommits {
				want = fmt.Sprintf("job rows %d, test's rows 1, jobs 1", map[bool]int{false: 1, true: 0}[c.fail])
			}
			if got := rows(); got != want {
				t.Errorf("after the test's unit ended: %s, want %s", got, want)
			}
		})
	}
}

// A job whose Work starts a goroutine that uses the job's session after
// Work returned: scoped.Current there is ErrScopeClosed, the transaction it
// took during Work fails, and nothing it writes reaches the database; the
// job is completed once with its own row.
func TestReview10GoroutineAfterWorkReturned(t *testing.T) {
	t.Parallel()
	for _, completeTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("CompleteTx=%v", completeTx), func(t *testing.T) {
			t.Parallel()
			e := newSchemaEnv(t)
			release := make(chan struct{})
			type late struct{ current, exec error }
			results := make(chan late, 1)
			var r runs
			workers := river.NewWorkers()
			river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[r10Args]) error {
				r.add(job.ID, job.Attempt)
				tx, err := scoped.Current[pgx.Tx](ctx)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES ($1, $2, 1)", job.ID, job.Attempt); err != nil {
					return err
				}
				go func() {
					<-release
					var l late
					_, l.current = scoped.Current[pgx.Tx](ctx)
					_, l.exec = tx.Exec(context.WithoutCancel(ctx), "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES ($1, 99, 2)", job.ID)
					results <- l
				}()
				return nil
			}))
			client := e.startClient(t, e.clientConfig(workers, e.txMiddleware(completeTx)))
			res, err := client.Insert(dbtest.Ctx(t), r10Args{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			id := res.Job.ID
			e.awaitDrained(t, dbtest.Bound)
			close(release)
			l := <-results
			stopClient(t, client)
			if !errors.Is(l.current, scoped.ErrScopeClosed) {
				t.Errorf("scoped.Current after Work returned = %v, want ErrScopeClosed", l.current)
			}
			if l.exec == nil {
				t.Errorf("Exec on the job's transaction after Work returned: no error")
			}
			if got := e.attempts(t, id); !slices.Equal(got, []int{1}) {
				t.Errorf("rows by attempt %v, want [1] (none of the goroutine's)", got)
			}
			if j := e.job(t, id); j != (jobState{State: "completed", Attempt: 1}) {
				t.Errorf("job %+v, want completed at attempt 1", j)
			}
			if got := r.of(id); !slices.Equal(got, []int{1}) {
				t.Errorf("attempts run %v, want [1]", got)
			}
			if n := e.pool.Stat().AcquiredConns(); n != 0 {
				t.Errorf("%d connections left acquired", n)
			}
		})
	}
}

// A goroutine of Work whose statement is still running on the job's
// transaction when Work returns: whatever the commit does with it, the
// goroutine's write is saved if and only if its Exec succeeded and the job
// is completed only with its attempt's row saved; no connection is left.
func TestReview10StatementInFlightWhenWorkReturns(t *testing.T) {
	t.Parallel()
	for _, completeTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("CompleteTx=%v", completeTx), func(t *testing.T) {
			t.Parallel()
			e := newSchemaEnv(t)
			execErr := make(chan error, 4)
			workers := river.NewWorkers()
			river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[r10Args]) error {
				tx, err := scoped.Current[pgx.Tx](ctx)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES ($1, $2, $3)", job.ID, job.Attempt, job.Attempt); err != nil {
					return err
				}
				started := make(chan struct{})
				go func() {
					close(started)
					_, err := tx.Exec(context.WithoutCancel(ctx), "INSERT INTO "+e.table+
						" (job_id, attempt, id) SELECT $1, 100 + $2, 100 + $2 FROM pg_sleep(0.2)", job.ID, job.Attempt)
					execErr <- err
				}()
				<-started
				return nil
			}))
			client := e.startClient(t, e.clientConfig(workers, e.txMiddleware(completeTx)))
			res, err := client.Insert(dbtest.Ctx(t), r10Args{}, &river.InsertOpts{MaxAttempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			id := res.Job.ID
			e.awaitDrained(t, dbtest.Bound)
			stopClient(t, client)
			j := e.job(t, id)
			got := e.attempts(t, id)
			var jobErr string
			_ = e.pool.QueryRow(dbtest.Ctx(t), "SELECT coalesce(errors[1]->>'error', '') FROM "+e.schema+".river_job WHERE id = $1", id).Scan(&jobErr)
			err = <-execErr
			t.Logf("job %+v (%q), rows by attempt %v, the goroutine's Exec: %v", j, jobErr, got, err)
			// Before the commit, the goroutine's write is the unit's; after
			// it, it must fail.
			committed, goroutineSaved := slices.Contains(got, 1), slices.Contains(got, 101)
			if goroutineSaved && !committed || goroutineSaved && err != nil || committed && err == nil && !goroutineSaved {
				t.Errorf("unit committed %v, goroutine's row saved %v, its Exec's error %v", committed, goroutineSaved, err)
			}
			if j.State == "completed" && !slices.Contains(got, j.Attempt) {
				t.Errorf("job completed without its row: rows %v", got)
			}
			if n := e.pool.Stat().AcquiredConns(); n != 0 {
				t.Errorf("%d connections left acquired", n)
			}
		})
	}
}

// A job that enqueues another with Insert (the outbox, in the job's own
// transaction) and then outlives River's JobTimeout: the timed-out
// attempt's job is not enqueued, the retried attempt's is, once.
func TestReview10TimedOutJobTakesItsOutboxJob(t *testing.T) {
	t.Parallel()
	for _, completeTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("CompleteTx=%v", completeTx), func(t *testing.T) {
			t.Parallel()
			e := newSchemaEnv(t)
			txs := scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
			workers := river.NewWorkers()
			// The outbox's kind must be known to the client that inserts it;
			// its queue is never worked.
			river.AddWorker(workers, river.WorkFunc(func(context.Context, *river.Job[outboxArgs]) error { return nil }))
			river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[r10Args]) error {
				client := river.ClientFromContext[pgx.Tx](ctx)
				if _, err := scopedriver.Insert(ctx, txs, client, outboxArgs{Unit: int64(job.Attempt)},
					&river.InsertOpts{Queue: "r10_unworked"}); err != nil {
					return err
				}
				if job.Attempt == 1 {
					tx, err := txs.Current(ctx)
					if err != nil {
						return err
					}
					_, err = tx.Exec(ctx, "SELECT pg_sleep(30)") // cancelled by the timeout
					if err == nil {
						err = errors.New("pg_sleep was not cancelled")
					}
					return err
				}
				return nil
			}))
			opts := []scopedriver.Option{scopedriver.Bind(txs)}
			if completeTx {
				opts = append(opts, scopedriver.CompleteTx(txs))
			}
			cfg := e.clientConfig(workers, scopedriver.NewMiddleware(opts...))
			cfg.JobTimeout = 300_000_000 // 300 ms
			client := e.startClient(t, cfg)
			res, err := client.Insert(dbtest.Ctx(t), r10Args{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			e.awaitQuery(t, dbtest.Bound, "SELECT count(*) = 0 FROM "+e.schema+".river_job WHERE kind = 'scopedriver_review10' AND state NOT IN ('completed', 'discarded', 'cancelled')")
			stopClient(t, client)
			if j := e.job(t, res.Job.ID); j != (jobState{State: "completed", Attempt: 2, Errors: 1}) {
				var jobErr string
				_ = e.pool.QueryRow(dbtest.Ctx(t), "SELECT coalesce(errors[2]->>'error', '') FROM "+e.schema+".river_job WHERE id = $1", res.Job.ID).Scan(&jobErr)
				t.Errorf("job %+v (%s), want completed at attempt 2 after one timeout", j, jobErr)
			}
			if got := e.outboxJobs(t); !slices.Equal(got, []int64{2}) {
				t.Errorf("outbox jobs of attempts %v, want [2]", got)
			}
			if n := e.pool.Stat().AcquiredConns(); n != 0 {
				t.Errorf("%d connections left acquired", n)
			}
		})
	}
}
