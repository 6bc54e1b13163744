package scopedriver_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
)

// timeoutArgs is a job whose first attempt outlives River's JobTimeout
// after writing; later attempts write and return at once.
type timeoutArgs struct {
	How string `json:"how"`
}

func (timeoutArgs) Kind() string { return "scopedriver_review_timeout" }

// A job whose context River cancels (JobTimeout) after it wrote leaves no
// row of that attempt whatever it does then (returns the context's error,
// is cancelled in a query), nothing hangs, no connection stays acquired,
// and River runs it again.
func TestJobTimeoutRollsBack(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"return_ctx_err", "in_query", "swallowed"} {
		for _, completeTx := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/CompleteTx=%v", how, completeTx), func(t *testing.T) {
				t.Parallel()
				e := newSchemaEnv(t)
				var r runs
				workers := river.NewWorkers()
				river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[timeoutArgs]) error {
					r.add(job.ID, job.Attempt)
					tx, err := scoped.Current[pgx.Tx](ctx)
					if err != nil {
						return err
					}
					if _, err := tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES ($1, $2, $3)",
						job.ID, job.Attempt, job.ID*1000+int64(job.Attempt)); err != nil {
						return err
					}
					if job.Attempt > 1 {
						return nil
					}
					switch job.Args.How {
					case "return_ctx_err":
						<-ctx.Done()
						return ctx.Err()
					case "swallowed":
						// The cancelled query's error is dropped: the
						// transaction it broke must not commit.
						_, _ = tx.Exec(ctx, "SELECT pg_sleep(30)")
						return nil
					default:
						_, err := tx.Exec(ctx, "SELECT pg_sleep(30)")
						if err == nil {
							err = errors.New("pg_sleep was not cancelled")
						}
						return err
					}
				}))
				cfg := e.clientConfig(workers, e.txMiddleware(completeTx))
				cfg.JobTimeout = 300 * time.Millisecond
				client := e.startClient(t, cfg)
				res, err := client.Insert(dbtest.Ctx(t), timeoutArgs{How: how}, nil)
				if err != nil {
					t.Fatal(err)
				}
				id := res.Job.ID
				e.awaitDrained(t, dbtest.Bound)
				stopClient(t, client)
				if got := e.attempts(t, id); !slices.Equal(got, []int{2}) {
					t.Errorf("rows by attempt: %v, want [2] (nothing of the timed-out attempt)", got)
				}
				if j := e.job(t, id); j != (jobState{State: "completed", Attempt: 2, Errors: 1}) {
					t.Errorf("job: %+v, want completed at attempt 2 after one timeout", j)
				}
				if n := e.pool.Stat().AcquiredConns(); n != 0 {
					t.Errorf("%d connections still acquired after the client stopped", n)
				}
			})
		}
	}
}

type outputArgs struct{}

func (outputArgs) Kind() string { return "scopedriver_review_output" }

// A job's river.RecordOutput is kept when CompleteTx completes the job in
// its transaction (River's own completion then finds it completed).
func TestRecordOutputWithCompleteTx(t *testing.T) {
	t.Parallel()
	for _, completeTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("CompleteTx=%v", completeTx), func(t *testing.T) {
			t.Parallel()
			e := newSchemaEnv(t)
			workers := river.NewWorkers()
			river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[outputArgs]) error {
				if _, err := scoped.Current[pgx.Tx](ctx); err != nil {
					return err
				}
				return river.RecordOutput(ctx, map[string]int{"answer": 42})
			}))
			client := e.startClient(t, e.clientConfig(workers, e.txMiddleware(completeTx)))
			res, err := client.Insert(dbtest.Ctx(t), outputArgs{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			e.awaitDrained(t, dbtest.Bound)
			stopClient(t, client)
			var out *string
			if err := e.pool.QueryRow(dbtest.Ctx(t), "SELECT metadata->>'output' FROM "+e.schema+".river_job WHERE id = $1", res.Job.ID).Scan(&out); err != nil {
				t.Fatal(err)
			}
			if out == nil || *out != `{"answer": 42}` {
				t.Errorf("recorded output %v, want {\"answer\": 42}", out)
			}
		})
	}
}
