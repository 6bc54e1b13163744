package scopedriver_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/riverqueue/river"
)

// Every job's insert is committed exactly once, and every job completed,
// whether River completes the jobs or CompleteTx does in their
// transactions.
func TestTwoHundredJobs(t *testing.T) {
	t.Parallel()
	const jobs = 200
	for _, completeTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("CompleteTx=%v", completeTx), func(t *testing.T) {
			t.Parallel()
			e := newSchemaEnv(t)
			modes := make([]string, jobs)
			ids := e.insert(t, modes...)
			var r runs
			workers := river.NewWorkers()
			river.AddWorker(workers, work(e.table, &r, nil))
			client := e.startClient(t, e.clientConfig(workers, e.txMiddleware(completeTx)))
			e.awaitDrained(t, dbtest.Bound)
			stopClient(t, client)

			if n := e.count(t, "SELECT count(*) FROM "+e.table); n != jobs {
				t.Errorf("%d rows, want %d", n, jobs)
			}
			if n := e.count(t, "SELECT count(DISTINCT job_id) FROM "+e.table+" WHERE attempt = 1"); n != jobs {
				t.Errorf("%d jobs left their row at attempt 1, want %d", n, jobs)
			}
			if n := e.count(t, "SELECT count(*) FROM "+e.schema+".river_job WHERE state = 'completed' AND attempt = 1"); n != jobs {
				t.Errorf("%d jobs completed at their first attempt, want %d; states %v", n, jobs, e.jobStates(t))
			}
			if n := r.total(); n != jobs {
				t.Errorf("%d attempts run, want %d", n, jobs)
			}
			for _, id := range ids {
				if got := e.attempts(t, id); !slices.Equal(got, []int{1}) {
					t.Fatalf("job %d left rows of attempts %v, want [1]", id, got)
				}
			}
		})
	}
}

// A job that fails twice after its insert, then succeeds, leaves exactly
// the row of its third attempt; a panicking attempt leaves nothing either.
func TestFailedAttemptsLeaveNoRow(t *testing.T) {
	t.Parallel()
	cases := []struct {
		mode     string
		attempts int
		errText  string
	}{
		{modeFailTwice, 3, "fails on purpose"},
		{modePanicOnce, 2, "panics on purpose"},
	}
	for _, completeTx := range []bool{false, true} {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/CompleteTx=%v", c.mode, completeTx), func(t *testing.T) {
				t.Parallel()
				e := newSchemaEnv(t)
				id := e.insert(t, c.mode)[0]
				var r runs
				workers := river.NewWorkers()
				river.AddWorker(workers, work(e.table, &r, nil))
				client := e.startClient(t, e.clientConfig(workers, e.txMiddleware(completeTx)))
				e.awaitDrained(t, dbtest.Bound)
				stopClient(t, client)

				if got := e.attempts(t, id); !slices.Equal(got, []int{c.attempts}) {
					t.Errorf("rows by attempt: %v, want only the last attempt's, [%d]", got, c.attempts)
				}
				if got := r.of(id); len(got) != c.attempts {
					t.Errorf("attempts run: %v, want %d", got, c.attempts)
				}
				want := jobState{State: "completed", Attempt: c.attempts, Errors: c.attempts - 1}
				if j := e.job(t, id); j != want {
					t.Errorf("job: %+v, want %+v", j, want)
				}
				var lastErr string
				if err := e.pool.QueryRow(dbtest.Ctx(t), "SELECT errors[1]->>'error' FROM "+e.schema+
					".river_job WHERE id = $1", id).Scan(&lastErr); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(lastErr, c.errText) {
					t.Errorf("River recorded %q for attempt 1, want the job's own failure (%q)", lastErr, c.errText)
				}
			})
		}
	}
}

// A commit that fails (here a deferred unique check, at COMMIT) after Work
// returned nil rolls back the job's writes and, with CompleteTx, its
// completion: River retries the job, which is not left completed without
// its work.
func TestFailedCommitRetries(t *testing.T) {
	t.Parallel()
	for _, completeTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("CompleteTx=%v", completeTx), func(t *testing.T) {
			t.Parallel()
			e := newSchemaEnv(t)
			if _, err := e.pool.Exec(dbtest.Ctx(t), "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES (0, 0, -1)"); err != nil {
				t.Fatal(err)
			}
			id := e.insert(t, modeDeferredClash)[0]
			var r runs
			workers := river.NewWorkers()
			river.AddWorker(workers, work(e.table, &r, nil))
			client := e.startClient(t, e.clientConfig(workers, e.txMiddleware(completeTx)))
			e.awaitDrained(t, dbtest.Bound)
			stopClient(t, client)

			if got := e.attempts(t, id); !slices.Equal(got, []int{2}) {
				t.Errorf("rows by attempt: %v, want [2]", got)
			}
			if j := e.job(t, id); j != (jobState{State: "completed", Attempt: 2, Errors: 1}) {
				t.Errorf("job: %+v, want completed at attempt 2 after one failed commit", j)
			}
			var lastErr string
			if err := e.pool.QueryRow(dbtest.Ctx(t), "SELECT errors[1]->>'error' FROM "+e.schema+
				".river_job WHERE id = $1", id).Scan(&lastErr); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(lastErr, "commit") || !strings.Contains(lastErr, "23505") {
				t.Errorf("River recorded %q, want the failed commit (unique violation, SQLSTATE 23505)", lastErr)
			}
		})
	}
}

// CompleteTx begins the job's transaction for the completion when Work
// did not use it, and a worker that already completed itself by hand in
// that transaction is not an error.
func TestCompleteTxEdges(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{modeNoWrite, modeSelfComplete} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := newSchemaEnv(t)
			id := e.insert(t, mode)[0]
			var r runs
			workers := river.NewWorkers()
			river.AddWorker(workers, work(e.table, &r, nil))
			client := e.startClient(t, e.clientConfig(workers, e.txMiddleware(true)))
			e.awaitDrained(t, dbtest.Bound)
			stopClient(t, client)

			if j := e.job(t, id); j != (jobState{State: "completed", Attempt: 1}) {
				t.Errorf("job: %+v, want completed at attempt 1 without errors", j)
			}
			want := []int{1}
			if mode == modeNoWrite {
				want = nil
			}
			if got := e.attempts(t, id); !slices.Equal(got, want) {
				t.Errorf("rows by attempt: %v, want %v", got, want)
			}
			if got := r.of(id); !slices.Equal(got, []int{1}) {
				t.Errorf("attempts run: %v, want [1]", got)
			}
		})
	}
}
