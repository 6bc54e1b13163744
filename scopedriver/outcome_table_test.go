package scopedriver_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
)

// review5Args is a job of the outcome table: its hand commit and what
// follows it.
type review5Args struct {
	Hand string `json:"hand"`
	Then string `json:"then"`
}

func (review5Args) Kind() string { return "scopedriver_review5_outcome" }

// review5Worker inserts (job, 1) in a transaction of its own and commits
// it by hand as Hand says (none, ok, failed: refused at COMMIT as id
// 1000001, unknown-saved and unknown-lost: ErrCommitUnknown after a real
// commit or a rollback), then inserts (job, 2) in the job's transaction
// and does as Then says: return nil (ok), return a real serialization
// failure (retry), have its COMMIT refused (commit-fail, 1000002), or
// outlive its timeout and return the context's error (deadline).
type review5Worker struct {
	river.WorkerDefaults[review5Args]
	table string
	hands map[string]*scoped.ScopedSession[pgx.Tx]
	runs  *runs
}

func (w *review5Worker) Timeout(job *river.Job[review5Args]) time.Duration {
	if job.Args.Then == "deadline" {
		// Long enough for the work before the deadline (a hand commit
		// waiting for one of the pool's connections, which the other
		// jobs share) on a busy machine: the case is a job outliving its
		// timeout after its work, not one cut short in the middle of it.
		return 2 * time.Second
	}
	return 0
}

func (w *review5Worker) Work(ctx context.Context, job *river.Job[review5Args]) error {
	w.runs.add(job.ID, job.Attempt)
	insert := func(tx pgx.Tx, id int) error {
		_, err := tx.Exec(ctx, "INSERT INTO "+w.table+" (job_id, id) VALUES ($1, $2)", job.ID, id)
		return err
	}
	if h := job.Args.Hand; h != "none" {
		txs := w.hands[h]
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		id := 1
		if h == "failed" {
			id = 1000001
		}
		if err := insert(tx, id); err != nil {
			return err
		}
		_ = txs.Commit(ctx) // the job goes on, whatever it says
	}
	tx, err := scoped.Current[pgx.Tx](ctx)
	if err != nil {
		return err
	}
	id := 2
	if job.Args.Then == "commit-fail" {
		id = 1000002
	}
	if err := insert(tx, id); err != nil {
		return err
	}
	switch job.Args.Then {
	case "retry":
		_, err := tx.Exec(ctx, "DO $$ BEGIN RAISE EXCEPTION 'review5 conflict' USING ERRCODE = 'serialization_failure'; END $$")
		return err
	case "deadline":
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// Review 5: every combination of a hand commit (ScopedSession.Commit) and
// what follows it, as River jobs on the real PostgreSQL, with and without
// CompleteTx: the rows, how many times the job ran (MaxAttempts 2), and
// the state River recorded, which must be true of those rows: never
// completed with work not saved, never run again, nor discarded as
// failed, after work saved or maybe saved.
func TestOutcomeTable(t *testing.T) {
	e := newSchemaEnv(t)
	table := e.schema + ".outcome"
	if _, err := e.pool.Exec(dbtest.Ctx(t), fmt.Sprintf(`
CREATE TABLE %[1]s (job_id bigint NOT NULL, id bigint NOT NULL, PRIMARY KEY (job_id, id));
CREATE FUNCTION %[1]s_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id >= 1000000 THEN
		RAISE EXCEPTION 'review5 commit failure' USING ERRCODE = 'check_violation';
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER outcome_check AFTER INSERT ON %[1]s
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %[1]s_check();`, table)); err != nil {
		t.Fatal(err)
	}
	hands := map[string]*scoped.ScopedSession[pgx.Tx]{
		"ok":     scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil)),
		"failed": scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil)),
		"unknown-saved": scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil),
			scoped.WithCommit(func(ctx context.Context, tx pgx.Tx) error {
				if err := tx.Commit(ctx); err != nil {
					return err
				}
				return fmt.Errorf("review5: connection lost after COMMIT: %w", scoped.ErrCommitUnknown)
			})),
		// COMMIT never reached the server, which aborts the transaction of
		// a connection that died, as this rollback does.
		"unknown-lost": scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil),
			scoped.WithCommit(func(ctx context.Context, tx pgx.Tx) error {
				_ = tx.Rollback(ctx)
				return fmt.Errorf("review5: connection lost before COMMIT: %w", scoped.ErrCommitUnknown)
			})),
	}
	var ran runs
	type row struct {
		complete   bool
		hand, then string
		job        int64
	}
	var rows []row
	var params []river.InsertManyParams
	for _, complete := range []bool{false, true} {
		queue := map[bool]string{false: "plain", true: "complete"}[complete]
		workers := river.NewWorkers()
		river.AddWorker(workers, &review5Worker{table: table, hands: hands, runs: &ran})
		cfg := e.clientConfig(workers, e.txMiddleware(complete))
		cfg.Queues = map[string]river.QueueConfig{queue: {MaxWorkers: 20}}
		e.startClient(t, cfg)
		for _, hand := range []string{"none", "ok", "failed", "unknown-saved", "unknown-lost"} {
			for _, then := range []string{"ok", "retry", "commit-fail", "deadline"} {
				rows = append(rows, row{complete: complete, hand: hand, then: then})
				params = append(params, river.InsertManyParams{Args: review5Args{Hand: hand, Then: then},
					InsertOpts: &river.InsertOpts{Queue: queue, MaxAttempts: 2}})
			}
		}
	}
	inserter, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{Logger: quietLogger(), Schema: e.schema})
	if err != nil {
		t.Fatal(err)
	}
	res, err := inserter.InsertMany(dbtest.Ctx(t), params)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		rows[i].job = res[i].Job.ID
	}
	e.awaitDrained(t, dbtest.Bound)

	for _, r := range rows {
		name := map[bool]string{false: "plain", true: "completetx"}[r.complete] + "/" + r.hand + "/" + r.then
		t.Run(name, func(t *testing.T) {
			var state, lastErr string
			if err := e.pool.QueryRow(dbtest.Ctx(t), "SELECT state::text, coalesce(errors[array_length(errors, 1)]->>'error', '') FROM "+
				e.schema+".river_job WHERE id = $1", r.job).Scan(&state, &lastErr); err != nil {
				t.Fatal(err)
			}
			ids := outcomeIDs(t, e, table, r.job)
			attempts := ran.of(r.job)
			report := fmt.Sprintf("job %s after %d run(s), rows %v, last error %q", state, len(attempts), ids, lastErr)
			t.Log(report)
			if lie := outcomeLie(state, ids, r.hand, r.then, len(attempts)); lie != "" {
				t.Errorf("untrue: %s; %s", lie, report)
			}
			wantState, wantRuns, wantErr := outcomeWant(r.hand, r.then)
			if state != wantState || len(attempts) != wantRuns || !strings.Contains(lastErr, wantErr) {
				t.Errorf("%s; want %s after %d run(s), error containing %q", report, wantState, wantRuns, wantErr)
			}
			if want := outcomeRows(r.hand, r.then); !slices.Equal(ids, want) {
				t.Errorf("rows %v, want %v", ids, want)
			}
		})
	}
}

func outcomeIDs(t *testing.T, e *schemaEnv, table string, job int64) []int64 {
	t.Helper()
	rows, err := e.pool.Query(dbtest.Ctx(t), "SELECT id FROM "+table+" WHERE job_id = $1 ORDER BY id", job)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func outcomeRows(hand, then string) []int64 {
	var ids []int64
	if hand == "ok" || hand == "unknown-saved" {
		ids = append(ids, 1)
	}
	if then == "ok" {
		ids = append(ids, 2)
	}
	return ids
}

// outcomeLie says why River's record of the job is untrue of its rows,
// or "".
func outcomeLie(state string, ids []int64, hand, then string, runs int) string {
	intended := []int64{2}
	switch hand {
	case "failed":
		intended = append(intended, 1000001)
	case "none":
	default:
		intended = append(intended, 1)
	}
	all := then == "ok"
	for _, id := range intended {
		all = all && slices.Contains(ids, id)
	}
	maybe := strings.HasPrefix(hand, "unknown")
	savedFirst := hand == "ok" || maybe
	switch {
	case state == "completed" && !all:
		return "completed with work not saved"
	case state == "discarded" && (len(ids) > 0 || maybe):
		return "discarded as failed (\"not saved\") with work saved or maybe saved"
	case runs > 1 && savedFirst:
		return "run again after its first run saved, or may have"
	}
	return ""
}

// outcomeWant is River's true record of a job: its state, its runs and a
// part of its last error.
func outcomeWant(hand, then string) (state string, runs int, err string) {
	switch {
	case hand == "ok" && then == "ok" || hand == "none" && then == "ok":
		return "completed", 1, ""
	case hand == "ok":
		return "cancelled", 1, "part of its work is saved"
	case strings.HasPrefix(hand, "unknown"):
		return "cancelled", 1, "may be saved"
	case hand == "failed" && then == "ok":
		return "cancelled", 1, "part of its work is saved"
	}
	return "discarded", 2, "" // nothing saved: River's retries, then discarded
}
