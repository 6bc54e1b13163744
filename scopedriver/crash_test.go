package scopedriver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/go-scoped/scoped/scopedriver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
)

// The worker process: this test binary, re-executed with these variables.
const (
	workerModeEnv   = "SCOPEDRIVER_TEST_WORKER" // "tx" (CompleteTx) or "river" (River completes)
	workerSchemaEnv = "SCOPEDRIVER_TEST_SCHEMA"
	workerTableEnv  = "SCOPEDRIVER_TEST_TABLE"
	workerLine      = "scopedriver-worker: " // prefix of what the worker process tells its test
)

// How the restarted worker finds the jobs the killed process left
// running. River requires RescueStuckJobsAfter >= JobTimeout.
const (
	jobTimeout   = 2 * time.Second
	rescueAfter  = 3 * time.Second
	rescueBound  = 90 * time.Second // how long a test waits for the rescue before failing
	workerLinger = 3 * time.Minute  // a worker process its test never killed exits after this
)

// workerProcess works the test's jobs until it is killed: a modeHang job
// blocks after its insert (the process dies mid-job); a modeCrashAfter
// job blocks after the middleware committed its scope, before River hears
// of the result (the process dies between the commit and River's own
// completion). It reports both on stdout.
func workerProcess(mode string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "worker process:", err)
		return 2
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv(dbtest.PostgresEnv))
	if err != nil {
		return fail(err)
	}
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf(workerLine+format+"\n", args...)
	}
	hang := func(job *river.Job[rowArgs]) {
		say("inserted %d", job.ID)
		select {}
	}
	// Listed before the middleware under test, so it sees Work's result
	// after the scope committed and before River does.
	crashAfterCommit := river.WorkerMiddlewareFunc(func(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
		err := doInner(ctx)
		var args rowArgs
		_ = json.Unmarshal(job.EncodedArgs, &args)
		if err == nil && args.Mode == modeCrashAfter {
			say("committed %d", job.ID)
			select {}
		}
		return err
	})
	txs := scopedpgx.NewTx(pool, pgx.TxOptions{})
	opts := []scopedriver.Option{scopedriver.Bind(txs)}
	if mode == "tx" {
		opts = append(opts, scopedriver.CompleteTx(txs))
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, work(os.Getenv(workerTableEnv), nil, hang))
	env := &schemaEnv{schema: os.Getenv(workerSchemaEnv)}
	client, err := river.NewClient(riverpgxv5.New(pool), env.clientConfig(workers, crashAfterCommit, scopedriver.NewMiddleware(opts...)))
	if err != nil {
		return fail(err)
	}
	if err := client.Start(ctx); err != nil {
		return fail(err)
	}
	time.Sleep(workerLinger)
	return fail(fmt.Errorf("not killed after %v", workerLinger))
}

// crashRun is what runCrash leaves for its test to check.
type crashRun struct {
	env     *schemaEnv
	hung    int64 // the job whose process was killed mid-job
	crashed int64 // the job whose process was killed between commit and completion
	// The crashed job's state right after the kill.
	crashedAfterKill jobState
	runs             runs // the attempts the restarted worker ran
}

// runCrash inserts a modeHang and a modeCrashAfter job, lets a worker
// process take both, kills it (SIGKILL) once both are at their crash
// point, then starts a normal worker in this process and waits until it
// has worked everything River gives it.
func runCrash(t *testing.T, completeTx bool) *crashRun {
	t.Helper()
	e := newSchemaEnv(t)
	ids := e.insert(t, modeHang, modeCrashAfter)
	r := &crashRun{env: e, hung: ids[0], crashed: ids[1]}

	mode := "river"
	if completeTx {
		mode = "tx"
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), workerModeEnv+"="+mode, workerSchemaEnv+"="+e.schema, workerTableEnv+"="+e.table)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), workerLine); ok {
				lines <- l
			}
		}
	}()
	killed := false
	kill := func() {
		if killed {
			return
		}
		killed = true
		_ = cmd.Process.Kill() // SIGKILL: no deferred function, no River shutdown
		for range lines {      // let the reader reach EOF
		}
		<-readDone
		_ = cmd.Wait()
	}
	t.Cleanup(kill)

	want := map[string]bool{fmt.Sprintf("inserted %d", r.hung): true, fmt.Sprintf("committed %d", r.crashed): true}
	timeout := time.After(dbtest.Bound)
	for len(want) > 0 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("worker process ended before both jobs reached their crash point; stderr:\n%s", stderr.String())
			}
			delete(want, l)
		case <-timeout:
			t.Fatalf("worker process: still waiting for %v after %v; stderr:\n%s", want, dbtest.Bound, stderr.String())
		}
	}
	kill()

	if j := e.job(t, r.hung); j.State != "running" || j.Attempt != 1 {
		t.Fatalf("hung job after the kill: %+v, want running, attempt 1", j)
	}
	r.crashedAfterKill = e.job(t, r.crashed)

	// The killed process still holds River's leadership until its lease
	// expires (15 s); end it now, as the expiry would, so that the new
	// worker leads (and rescues) at once.
	if _, err := e.pool.Exec(dbtest.Ctx(t), "DELETE FROM "+e.schema+".river_leader"); err != nil {
		t.Fatal(err)
	}
	// Jobs become rescuable RescueStuckJobsAfter after their attempt began;
	// the rescuer runs when its worker starts leading.
	e.awaitQuery(t, rescueBound, "SELECT coalesce(bool_and(attempted_at < now() - $1::interval), true) FROM "+
		e.schema+".river_job WHERE state = 'running'", (rescueAfter + 500*time.Millisecond).String())

	workers := river.NewWorkers()
	river.AddWorker(workers, work(e.table, &r.runs, nil))
	cfg := e.clientConfig(workers, e.txMiddleware(completeTx))
	cfg.JobTimeout = jobTimeout
	cfg.RescueStuckJobsAfter = rescueAfter
	client := e.startClient(t, cfg)
	e.awaitDrained(t, rescueBound)
	stopClient(t, client)
	return r
}

// A worker killed in the middle of a job leaves nothing of that attempt,
// and River's rescuer runs the job again, exactly once.
func TestWorkerKilledMidJob(t *testing.T) {
	t.Parallel()
	for _, completeTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("CompleteTx=%v", completeTx), func(t *testing.T) {
			t.Parallel()
			r := runCrash(t, completeTx)
			if got := r.env.attempts(t, r.hung); !slices.Equal(got, []int{2}) {
				t.Errorf("rows of the hung job by attempt: %v, want [2]: none of the killed attempt 1, one of the rescued attempt 2", got)
			}
			if got := r.runs.of(r.hung); !slices.Equal(got, []int{2}) {
				t.Errorf("attempts of the hung job run after the restart: %v, want exactly one, [2]", got)
			}
			if j := r.env.job(t, r.hung); j != (jobState{State: "completed", Attempt: 2, Errors: 1}) {
				t.Errorf("hung job: %+v, want completed at attempt 2 with the rescue's error", j)
			}
		})
	}
}

// With CompleteTx, a worker killed after its scope committed, before
// River recorded the job completed, has completed the job in the same
// transaction: the job never runs again. Without it (the control) River
// rescues the job and runs it a second time, duplicating its work: the
// crash point is real.
func TestCrashAfterCommit(t *testing.T) {
	t.Parallel()
	t.Run("CompleteTx", func(t *testing.T) {
		t.Parallel()
		r := runCrash(t, true)
		if want := (jobState{State: "completed", Attempt: 1}); r.crashedAfterKill != want {
			t.Errorf("crashed job right after the kill: %+v, want %+v", r.crashedAfterKill, want)
		}
		if got := r.runs.of(r.crashed); len(got) != 0 {
			t.Errorf("crashed job ran again, attempts %v; want never", got)
		}
		if got := r.env.attempts(t, r.crashed); !slices.Equal(got, []int{1}) {
			t.Errorf("rows of the crashed job by attempt: %v, want [1]", got)
		}
		if j := r.env.job(t, r.crashed); j != (jobState{State: "completed", Attempt: 1}) {
			t.Errorf("crashed job at the end: %+v, want completed at attempt 1", j)
		}
	})
	t.Run("RiverCompletes", func(t *testing.T) {
		t.Parallel()
		r := runCrash(t, false)
		if r.crashedAfterKill.State != "running" {
			t.Errorf("crashed job right after the kill: %+v, want still running", r.crashedAfterKill)
		}
		if got := r.runs.of(r.crashed); !slices.Equal(got, []int{2}) {
			t.Errorf("crashed job's attempts after the restart: %v, want it run again once, [2]", got)
		}
		if got := r.env.attempts(t, r.crashed); !slices.Equal(got, []int{1, 2}) {
			t.Errorf("rows of the crashed job by attempt: %v, want [1 2]: the duplicate CompleteTx prevents", got)
		}
	})
}
