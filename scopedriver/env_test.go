package scopedriver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/go-scoped/scoped/scopedriver"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
)

// rowArgs is the one job kind of these tests: its worker inserts the row
// (job id, attempt) into the test's table, in the job's transaction.
type rowArgs struct {
	Mode string `json:"mode"` // what the worker does besides inserting; see worker
}

func (rowArgs) Kind() string { return "scopedriver_row" }

// Worker modes.
const (
	modeOK            = ""
	modeFailTwice     = "fail_twice"     // returns an error on attempts 1 and 2, after its insert
	modePanicOnce     = "panic_once"     // panics on attempt 1, after its insert
	modeDeferredClash = "deferred_clash" // attempt 1 inserts a row whose deferred unique check fails at COMMIT
	modeHang          = "hang"           // worker process: blocks forever after its insert
	modeCrashAfter    = "crash_after"    // worker process: its process is killed after the commit
	modeNoWrite       = "no_write"       // neither inserts nor takes its transaction
	modeSelfComplete  = "self_complete"  // also completes itself with river.JobCompleteTx, by hand
)

// schemaEnv is a schema of its own, created and migrated by River's own
// migrations, with the test's table, so that tests never share River's
// tables.
type schemaEnv struct {
	schema string
	table  string // schema-qualified
	pool   *pgxpool.Pool
}

// newSchemaEnv creates a fresh schema, runs River's migrations in it and
// creates the rows table; everything is dropped when t ends.
func newSchemaEnv(t *testing.T) *schemaEnv {
	t.Helper()
	ctx := dbtest.Ctx(t)
	schema := dbtest.Table("scopedriver")
	pool := newPool(t, 20)
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dbtest.Bound)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: schema, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		t.Fatalf("River's migrations: %v", err)
	}
	table := schema + ".job_rows"
	// The unique key on id is deferred, checked at COMMIT, so that a test
	// can make a commit fail after Work returned nil.
	if _, err := pool.Exec(ctx, "CREATE TABLE "+table+` (
		job_id bigint NOT NULL, attempt int NOT NULL, id bigint NOT NULL,
		PRIMARY KEY (job_id, attempt),
		UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)`); err != nil {
		t.Fatal(err)
	}
	return &schemaEnv{schema: schema, table: table, pool: pool}
}

// newPool returns a pool of at most maxConns connections to the test
// server, closed when t ends.
func newPool(t *testing.T, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbtest.Postgres(t).DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n := pool.Stat().AcquiredConns(); n != 0 {
			t.Errorf("%d connections left acquired; pool not closed", n)
			return
		}
		pool.Close()
	})
	return pool
}

// quietLogger drops River's logs below Error: River logs every retried
// job at Warn, which these tests do on purpose.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// immediateRetry retries failed and rescued jobs at once, so that tests do
// not wait for River's default backoff.
type immediateRetry struct{}

func (immediateRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(time.Millisecond) }

// runs counts the attempts a worker ran, by job id.
type runs struct {
	mu sync.Mutex
	n  map[int64][]int // job id -> attempts run
}

func (r *runs) add(id int64, attempt int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = make(map[int64][]int)
	}
	r.n[id] = append(r.n[id], attempt)
}

func (r *runs) of(id int64) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.n[id]...)
}

func (r *runs) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, a := range r.n {
		n += len(a)
	}
	return n
}

// work is the worker of rowArgs: it inserts (job id, attempt, id) through
// the transaction it finds with scoped.Current, then does what the job's
// mode says. hang is called by modeHang after the insert.
func work(table string, r *runs, hang func(job *river.Job[rowArgs])) river.Worker[rowArgs] {
	return river.WorkFunc(func(ctx context.Context, job *river.Job[rowArgs]) error {
		if r != nil {
			r.add(job.ID, job.Attempt)
		}
		if job.Args.Mode == modeNoWrite {
			return nil
		}
		tx, err := scoped.Current[pgx.Tx](ctx)
		if err != nil {
			return err
		}
		id := job.ID*1000 + int64(job.Attempt) // unique per attempt
		if job.Args.Mode == modeDeferredClash && job.Attempt == 1 {
			id = -1 // the test inserted id -1 already: COMMIT fails
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (job_id, attempt, id) VALUES ($1, $2, $3)",
			job.ID, job.Attempt, id); err != nil {
			return err
		}
		switch job.Args.Mode {
		case modeFailTwice:
			if job.Attempt <= 2 {
				return fmt.Errorf("attempt %d fails on purpose", job.Attempt)
			}
		case modePanicOnce:
			if job.Attempt == 1 {
				panic("attempt 1 panics on purpose")
			}
		case modeSelfComplete:
			if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
				return err
			}
		case modeHang:
			if hang != nil {
				hang(job)
			}
		}
		return nil
	})
}

// clientConfig is River's configuration for these tests: schema, quick
// fetching and retries, and the middleware under test.
func (e *schemaEnv) clientConfig(workers *river.Workers, mw ...rivertype.Middleware) *river.Config {
	return &river.Config{
		FetchCooldown:     20 * time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		Logger:            quietLogger(),
		Middleware:        mw,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 10}},
		RetryPolicy:       immediateRetry{},
		Schema:            e.schema,
		TestOnly:          true,
		Workers:           workers,
	}
}

// startClient starts a River client on e's pool and stops it when t ends.
func (e *schemaEnv) startClient(t *testing.T, cfg *river.Config) *river.Client[pgx.Tx] {
	t.Helper()
	client, err := river.NewClient(riverpgxv5.New(e.pool), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(dbtest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopClient(t, client) })
	return client
}

func stopClient(t *testing.T, client *river.Client[pgx.Tx]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dbtest.Bound)
	defer cancel()
	if err := client.Stop(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("stopping River's client: %v", err)
	}
}

// insert inserts one job per mode, with an insert-only client, and
// returns their ids in order.
func (e *schemaEnv) insert(t *testing.T, modes ...string) []int64 {
	t.Helper()
	client, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{Logger: quietLogger(), Schema: e.schema})
	if err != nil {
		t.Fatal(err)
	}
	params := make([]river.InsertManyParams, len(modes))
	for i, m := range modes {
		params[i] = river.InsertManyParams{Args: rowArgs{Mode: m}}
	}
	res, err := client.InsertMany(dbtest.Ctx(t), params)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, len(res))
	for i, r := range res {
		ids[i] = r.Job.ID
	}
	return ids
}

// txMiddleware returns the middleware under test with a fresh
// ScopedSession of transactions on e's pool bound, completing jobs in it
// if completeTx.
func (e *schemaEnv) txMiddleware(completeTx bool) *scopedriver.Middleware {
	// The tests check the failures River records; the default teardown
	// hook would log them too.
	txs := scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
	opts := []scopedriver.Option{scopedriver.Bind(txs)}
	if completeTx {
		opts = append(opts, scopedriver.CompleteTx(txs))
	}
	return scopedriver.NewMiddleware(opts...)
}

// awaitQuery waits until query returns true, or fails t after a bound.
// It polls: the condition is the database's, not a timing.
func (e *schemaEnv) awaitQuery(t *testing.T, bound time.Duration, query string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	for {
		var ok bool
		if err := e.pool.QueryRow(ctx, query, args...).Scan(&ok); err != nil {
			t.Fatalf("waiting for %q: %v", query, err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("still not true after %v: %q %v\njobs: %v", bound, query, args, e.jobStates(t))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// awaitDrained waits until no job is left to work: every job completed,
// discarded or cancelled.
func (e *schemaEnv) awaitDrained(t *testing.T, bound time.Duration) {
	t.Helper()
	e.awaitQuery(t, bound, "SELECT count(*) = 0 FROM "+e.schema+".river_job WHERE state NOT IN ('completed', 'discarded', 'cancelled')")
}

// jobState is what the tests read of a job's row.
type jobState struct {
	State   string
	Attempt int
	Errors  int
}

func (e *schemaEnv) job(t *testing.T, id int64) jobState {
	t.Helper()
	var j jobState
	err := e.pool.QueryRow(dbtest.Ctx(t), "SELECT state::text, attempt, coalesce(array_length(errors, 1), 0) FROM "+
		e.schema+".river_job WHERE id = $1", id).Scan(&j.State, &j.Attempt, &j.Errors)
	if err != nil {
		t.Fatalf("job %d: %v", id, err)
	}
	return j
}

// jobStates counts the jobs per state, for failure messages.
func (e *schemaEnv) jobStates(t *testing.T) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := e.pool.Query(ctx, "SELECT state::text, count(*) FROM "+e.schema+".river_job GROUP BY 1")
	if err != nil {
		return map[string]int{"error: " + err.Error(): 0}
	}
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err == nil {
			out[s] = n
		}
	}
	rows.Close()
	return out
}

// attempts returns the attempts of job id that left a committed row.
func (e *schemaEnv) attempts(t *testing.T, id int64) []int {
	t.Helper()
	rows, err := e.pool.Query(dbtest.Ctx(t), "SELECT attempt FROM "+e.table+" WHERE job_id = $1 ORDER BY attempt", id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int, len(got))
	for i, a := range got {
		out[i] = int(a)
	}
	return out
}

func (e *schemaEnv) count(t *testing.T, query string) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(dbtest.Ctx(t), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
