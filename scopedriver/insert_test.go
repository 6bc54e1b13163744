package scopedriver_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/go-scoped/scoped/scopedriver"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// outboxArgs is the job a unit of work enqueues for itself.
type outboxArgs struct {
	Unit int64 `json:"unit"`
}

func (outboxArgs) Kind() string { return "scopedriver_outbox" }

// insertClient is an insert-only River client on e's schema.
func (e *schemaEnv) insertClient(t *testing.T) *river.Client[pgx.Tx] {
	t.Helper()
	client, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{Logger: quietLogger(), Schema: e.schema})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// outboxJobs returns the units of the outbox jobs in e's queue, ascending.
func (e *schemaEnv) outboxJobs(t *testing.T) []int64 {
	t.Helper()
	return e.int64s(t, "SELECT (args->>'unit')::bigint FROM "+e.schema+".river_job WHERE kind = 'scopedriver_outbox' ORDER BY 1")
}

// unitRows returns the units that left a row in e's table (job_id < 0,
// the unit in id, -1 - unit in job_id), ascending.
func (e *schemaEnv) unitRows(t *testing.T) []int64 {
	t.Helper()
	return e.int64s(t, "SELECT id FROM "+e.table+" WHERE job_id < 0 AND attempt = 0 ORDER BY 1")
}

func (e *schemaEnv) int64s(t *testing.T, query string) []int64 {
	t.Helper()
	rows, err := e.pool.Query(dbtest.Ctx(t), query)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeUnit writes the unit's row and enqueues its job in ctx's unit.
func writeUnit(ctx context.Context, e *schemaEnv, txs *scoped.ScopedSession[pgx.Tx], client *river.Client[pgx.Tx], unit int64) error {
	tx, err := txs.Current(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES (-1 - $1, 0, $1)", unit); err != nil {
		return err
	}
	_, err = scopedriver.Insert(ctx, txs, client, outboxArgs{Unit: unit}, nil)
	return err
}

// Outside a unit of work Insert fails with ErrNoScope and enqueues
// nothing: it never falls back to the pool.
func TestInsertOutsideAUnitFails(t *testing.T) {
	e := newSchemaEnv(t)
	client := e.insertClient(t)
	txs := scopedpgx.NewTx(e.pool, pgx.TxOptions{})
	if _, err := scopedriver.Insert(dbtest.Ctx(t), txs, client, outboxArgs{Unit: 1}, nil); !errors.Is(err, scoped.ErrNoScope) {
		t.Errorf("Insert outside a unit = %v, want ErrNoScope", err)
	}
	if _, err := scopedriver.InsertMany(dbtest.Ctx(t), txs, client, []river.InsertManyParams{{Args: outboxArgs{Unit: 2}}}); !errors.Is(err, scoped.ErrNoScope) {
		t.Errorf("InsertMany outside a unit = %v, want ErrNoScope", err)
	}
	if got := e.outboxJobs(t); len(got) != 0 {
		t.Errorf("jobs %v enqueued outside a unit", got)
	}
}

// Concurrent units, some failing at the root, some in a nested unit,
// some enqueuing several jobs at once: the jobs in River's table are
// exactly those of the work that committed.
func TestInsertedJobsAreExactlyTheCommittedUnits(t *testing.T) {
	e := newSchemaEnv(t)
	client := e.insertClient(t)
	txs := scopedpgx.NewTx(e.pool, pgx.TxOptions{})
	errFail := errors.New("fail")
	const units = 48
	var wg sync.WaitGroup
	for u := range int64(units) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
				if err := writeUnit(ctx, e, txs, client, u*10); err != nil {
					return err
				}
				// A nested unit enqueues too; it fails for u%4 == 2.
				_ = scoped.Run(ctx, func(ctx context.Context) error {
					if err := writeUnit(ctx, e, txs, client, u*10+1); err != nil {
						return err
					}
					if u%4 == 2 {
						return errFail
					}
					return nil
				})
				if u%4 == 3 {
					_, err := scopedriver.InsertMany(ctx, txs, client, []river.InsertManyParams{
						{Args: outboxArgs{Unit: u*10 + 2}}, {Args: outboxArgs{Unit: u*10 + 3}},
					})
					if err != nil {
						return err
					}
					for _, id := range []int64{u*10 + 2, u*10 + 3} {
						tx, _ := txs.Current(ctx)
						if _, err := tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES (-1 - $1, 0, $1)", id); err != nil {
							return err
						}
					}
				}
				if u%4 == 1 {
					return errFail
				}
				return nil
			})
			if err != nil && !errors.Is(err, errFail) {
				t.Errorf("unit %d: %v", u, err)
			}
		}()
	}
	wg.Wait()
	jobs, rows := e.outboxJobs(t), e.unitRows(t)
	if !slices.Equal(jobs, rows) {
		t.Errorf("jobs enqueued for %v, units committed %v", jobs, rows)
	}
	var want []int64
	for u := range int64(units) {
		switch u % 4 {
		case 0:
			want = append(want, u*10, u*10+1)
		case 2:
			want = append(want, u*10)
		case 3:
			want = append(want, u*10, u*10+1, u*10+2, u*10+3)
		}
	}
	slices.Sort(want)
	if !slices.Equal(jobs, want) {
		t.Errorf("jobs %v, want %v", jobs, want)
	}
}

// The middleware runs a job's OnCommit hooks after the job's commit: the
// hook sees the job's writes and, with CompleteTx, the job completed,
// from another connection. A job that fails runs its OnRollback hooks.
func TestJobHooksRunAfterTheJobsCommit(t *testing.T) {
	e := newSchemaEnv(t)
	type seen struct {
		kind        string
		rows, state string
	}
	var mu sync.Mutex
	var got []seen
	look := func(kind string, job *river.Job[rowArgs]) func(context.Context) {
		return func(ctx context.Context) {
			var rows int
			var state string
			err := e.pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM "+e.table+" WHERE job_id = $1), "+
				"(SELECT state::text FROM "+e.schema+".river_job WHERE id = $1)", job.ID).Scan(&rows, &state)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			got = append(got, seen{kind, fmt.Sprint(rows), state})
			mu.Unlock()
		}
	}
	done := make(chan struct{}, 4)
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[rowArgs]) error {
		defer func() { done <- struct{}{} }()
		tx, err := scoped.Current[pgx.Tx](ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES ($1, $2, $3)", job.ID, job.Attempt, job.ID*1000+int64(job.Attempt)); err != nil {
			return err
		}
		if err := scoped.OnCommit(ctx, look("commit", job)); err != nil {
			return err
		}
		if err := scoped.OnRollback(ctx, look("rollback", job)); err != nil {
			return err
		}
		if job.Args.Mode == modeFailTwice {
			return river.JobCancel(errors.New("cancelled on purpose"))
		}
		return nil
	}))
	e.startClient(t, e.clientConfig(workers, e.txMiddleware(true)))
	e.insert(t, modeOK, modeFailTwice)
	for range 2 {
		<-done
	}
	e.awaitDrained(t, dbtest.Bound)
	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(got, func(a, b seen) int { return strings.Compare(a.kind, b.kind) })
	want := []seen{{"commit", "1", "completed"}, {"rollback", "0", "running"}}
	if !slices.Equal(got, want) {
		t.Errorf("hooks saw %+v, want %+v", got, want)
	}
}
