package scopedriver_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
)

// outcomeArgs is a job that inserts a row in its transaction and then
// ends its Work as Mode says: with an error, a panic, River's snooze or
// cancel, or nil.
type outcomeArgs struct {
	Mode string `json:"mode"`
}

func (outcomeArgs) Kind() string { return "scopedriver_outcome" }

func (outcomeArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 1} }

// The job's insert is committed exactly when River records the job
// completed (docs/river.md): an error after the writes, a panic, a
// cancel (river.JobCancel) leave no row; a snooze (river.JobSnooze) leaves
// no row of the snoozed run and the row of the run that completes; with
// River completing the job and with CompleteTx.
func TestWorkOutcomeCommittedExactlyWhenCompleted(t *testing.T) {
	t.Parallel()
	cases := []struct {
		mode  string
		state string
		runs  []int64 // runs whose row is committed
	}{
		{"ok", "completed", []int64{1}},
		{"error", "discarded", nil},
		{"panic", "discarded", nil},
		{"cancel", "cancelled", nil},
		{"snooze_once", "completed", []int64{2}},
		{"cancel_wrapped", "cancelled", nil},
	}
	for _, completeTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("CompleteTx=%v", completeTx), func(t *testing.T) {
			t.Parallel()
			e := newSchemaEnv(t)
			var run atomic.Int64
			runOf := map[int64]*atomic.Int64{}
			workers := river.NewWorkers()
			river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[outcomeArgs]) error {
				n := runOf[job.ID].Add(1)
				run.Add(1)
				tx, err := scoped.Current[pgx.Tx](ctx)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES ($1, $2, $3)",
					job.ID, n, job.ID*1000+n); err != nil {
					return err
				}
				switch job.Args.Mode {
				case "error":
					return errors.New("fails after its insert")
				case "panic":
					panic("panics after its insert")
				case "cancel":
					return river.JobCancel(errors.New("cancelled after its insert"))
				case "cancel_wrapped":
					return fmt.Errorf("wrapped: %w", river.JobCancel(errors.New("cancelled after its insert")))
				case "snooze_once":
					if n == 1 {
						return river.JobSnooze(time.Millisecond)
					}
				}
				return nil
			}))
			ins, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{Logger: quietLogger(), Schema: e.schema})
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]int64, len(cases))
			for i, c := range cases {
				res, err := ins.Insert(dbtest.Ctx(t), outcomeArgs{Mode: c.mode}, nil)
				if err != nil {
					t.Fatal(err)
				}
				ids[i] = res.Job.ID
				runOf[res.Job.ID] = new(atomic.Int64)
			}
			client := e.startClient(t, e.clientConfig(workers, e.txMiddleware(completeTx)))
			e.awaitDrained(t, dbtest.Bound)
			stopClient(t, client)
			for i, c := range cases {
				if got := e.job(t, ids[i]).State; got != c.state {
					t.Errorf("%s: job %s, want %s", c.mode, got, c.state)
				}
				var want []int
				for _, r := range c.runs {
					want = append(want, int(r))
				}
				if got := e.attempts(t, ids[i]); fmt.Sprint(got) != fmt.Sprint(want) && !(len(got) == 0 && len(want) == 0) {
					t.Errorf("%s: committed rows of runs %v, want %v", c.mode, got, want)
				}
			}
		})
	}
}
