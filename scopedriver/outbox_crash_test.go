package scopedriver_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// The outbox process: this test binary, re-executed with this variable
// (and workerSchemaEnv, workerTableEnv).
const outboxProcEnv = "SCOPEDRIVER_TEST_OUTBOX"

// The unit whose OnCommit hook the outbox process blocks in, after its
// commit: the test kills the process there.
const crashUnit = 41

// outboxProcess runs units of work on four goroutines until it is killed:
// each writes its row and enqueues its job with scopedriver.Insert, and
// registers an OnCommit hook whose side effect is a second row (attempt
// 1). Every fifth unit fails after both. The hook of crashUnit says
// "committed" and blocks: the process dies right after that commit, with
// the other goroutines anywhere in their units.
func outboxProcess() int {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv(dbtest.PostgresEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "outbox process:", err)
		return 2
	}
	e := &schemaEnv{schema: os.Getenv(workerSchemaEnv), table: os.Getenv(workerTableEnv), pool: pool}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: quietLogger(), Schema: e.schema})
	if err != nil {
		fmt.Fprintln(os.Stderr, "outbox process:", err)
		return 2
	}
	txs := scopedpgx.NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
	errFail := errors.New("fail")
	var next atomic.Int64
	for range 4 {
		go func() {
			for {
				unit := next.Add(1)
				_ = scoped.Run(ctx, func(ctx context.Context) error {
					if err := writeUnit(ctx, e, txs, client, unit); err != nil {
						return err
					}
					err := scoped.OnCommit(ctx, func(ctx context.Context) {
						if unit == crashUnit {
							fmt.Printf("%scommitted %d\n", workerLine, unit)
							select {}
						}
						_, _ = pool.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES (-1 - $1, 1, $1 + 1000000)", unit)
					})
					if err != nil {
						return err
					}
					if unit%5 == 0 {
						return errFail
					}
					return nil
				})
			}
		}()
	}
	time.Sleep(workerLinger)
	fmt.Fprintf(os.Stderr, "outbox process: not killed after %v\n", workerLinger)
	return 2
}

// kill -9 of a process right after a unit's commit, while others are in
// flight: the jobs enqueued with scopedriver.Insert are exactly the units
// that committed (none lost, none invented), the unit killed after its
// commit included; its OnCommit hook's side effect, by contrast, is lost.
func TestOutboxSurvivesKill9(t *testing.T) {
	t.Parallel()
	e := newSchemaEnv(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), outboxProcEnv+"=1", workerSchemaEnv+"="+e.schema, workerTableEnv+"="+e.table)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	committed := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), fmt.Sprintf("%scommitted %d", workerLine, crashUnit)) {
				close(committed)
			}
		}
	}()
	killed := false
	kill := func() {
		if killed {
			return
		}
		killed = true
		_ = cmd.Process.Kill() // SIGKILL: no deferred function, no hook, no rollback by the process
		<-readDone
		_ = cmd.Wait()
	}
	t.Cleanup(kill)
	select {
	case <-committed:
	case <-time.After(dbtest.Bound):
		kill() // stderr is complete once the process has been waited for
		t.Fatalf("the outbox process never reached unit %d's commit; stderr:\n%s", crashUnit, stderr.String())
	}
	kill()
	// The server rolls back the killed connections' open transactions; a
	// COMMIT it had received still lands. Wait until none is left.
	e.awaitQuery(t, dbtest.Bound, "SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = current_database() "+
		"AND state LIKE 'idle in transaction%' AND query LIKE '%"+e.schema+"%'")

	jobs, rows := e.outboxJobs(t), e.unitRows(t)
	if !slices.Equal(jobs, rows) {
		t.Errorf("jobs for units %v\nunits committed %v", jobs, rows)
	}
	if !slices.Contains(jobs, crashUnit) {
		t.Errorf("no job for unit %d, killed right after its commit", crashUnit)
	}
	for _, u := range jobs {
		if u%5 == 0 {
			t.Errorf("a job for unit %d, which rolled back", u)
		}
	}
	effects := e.int64s(t, "SELECT id - 1000000 FROM "+e.table+" WHERE attempt = 1 ORDER BY 1")
	for _, u := range effects {
		if !slices.Contains(jobs, u) {
			t.Errorf("a hook's effect for unit %d, which did not commit", u)
		}
	}
	if slices.Contains(effects, crashUnit) {
		t.Errorf("unit %d's hook ran, though the process died in it", crashUnit)
	}
	t.Logf("%d units committed, %d hook effects, before the kill", len(jobs), len(effects))
}
