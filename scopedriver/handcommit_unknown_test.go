package scopedriver_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/go-scoped/scoped/scopedriver"
)

// handsArgs is a job that commits rows by hand, one hand commit per entry
// of Hands, then inserts its last row in the job's transaction and
// returns nil.
type handsArgs struct {
	Hands []string `json:"hands"` // "saved", "unknown", "lost"
	Same  bool     `json:"same"`  // every hand commit on the job's own ScopedSession (commit, use again, commit)
}

func (handsArgs) Kind() string { return "scopedriver_hands" }

// Three attempts: River would run the job again after an error.
func (handsArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 3} }

// The ids of the hands' rows: the table's deferred trigger answers a
// COMMIT holding an id of 2000000 and above with SQLSTATE 40003
// (statement completion unknown: the server does not know whether the
// transaction committed; scopedpgx says scoped.ErrCommitUnknown), and one
// holding an id of 1000000 and above with a check violation. Both roll
// the transaction back: the unknown commit saved nothing, but nobody can
// know it.
var handIDs = map[string]int64{"saved": 1, "lost": 1000000, "unknown": 2000000}

// lastID is the id of the row the job's transaction commits at the end.
const lastID = 99

// errRecorder is the client's middleware outside scopedriver's: it keeps
// the error scopedriver's Work returned, by job id.
type errRecorder struct {
	river.MiddlewareDefaults
	mu   sync.Mutex
	errs map[int64]error
}

func (r *errRecorder) Work(ctx context.Context, job *rivertype.JobRow, doInner func(ctx context.Context) error) error {
	err := doInner(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.errs == nil {
		r.errs = make(map[int64]error)
	}
	r.errs[job.ID] = err
	return err
}

func (r *errRecorder) of(id int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errs[id]
}

// A job whose hand commits (ScopedSession.Commit) saved, failed or are of
// unknown outcome, and that then returns nil, on the real PostgreSQL,
// with and without CompleteTx: River must not run it again when part of
// it is or may be saved, nor record it completed when part of it is lost
// or may be: it is cancelled, its error wrapping scoped.ErrCommitUnknown
// when a hand commit's outcome is unknown (whatever another saved), and
// scoped.ErrPartiallyCommitted when one failed and the rest was saved.
//
// The hand commits are on the job's own ScopedSession (Same: commit, use
// it again, commit) or each on a ScopedSession of its own; the job's last
// row is always in the job's transaction, which carries its completion
// with CompleteTx.
func TestHandCommitsOfEveryOutcomeThenNil(t *testing.T) {
	t.Parallel()
	e := newSchemaEnv(t)
	table := e.schema + ".hands"
	if _, err := e.pool.Exec(dbtest.Ctx(t), fmt.Sprintf(`
CREATE TABLE %[1]s (job_id bigint NOT NULL, id bigint NOT NULL, PRIMARY KEY (job_id, id));
CREATE FUNCTION %[1]s_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.id >= 2000000 THEN
		RAISE EXCEPTION 'hands: result is ambiguous' USING ERRCODE = '40003';
	ELSIF NEW.id >= 1000000 THEN
		RAISE EXCEPTION 'hands: commit refused' USING ERRCODE = 'check_violation';
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER hands_check AFTER INSERT ON %[1]s
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %[1]s_check();`, table)); err != nil {
		t.Fatal(err)
	}

	type jobCase struct {
		name     string
		args     handsArgs
		complete bool
		job      int64
	}
	var cases []*jobCase
	for _, hands := range [][]string{
		{"saved", "unknown"}, {"unknown", "saved"}, {"saved", "lost"}, {"unknown"}, {"lost"},
	} {
		for _, same := range []bool{false, true} {
			if same && len(hands) == 1 {
				continue // one session or many: the same with one hand commit
			}
			for _, complete := range []bool{false, true} {
				name := fmt.Sprintf("%s/same=%v/CompleteTx=%v", strings.Join(hands, "+"), same, complete)
				cases = append(cases, &jobCase{name: name, args: handsArgs{Hands: hands, Same: same}, complete: complete})
			}
		}
	}

	var ran runs
	rec := &errRecorder{}
	// One ScopedSession per hand commit when they are not all the job's own.
	hands := []*scoped.ScopedSession[pgx.Tx]{
		scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil)),
		scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil)),
	}
	queue := map[bool]string{false: "plain", true: "complete"}
	for _, complete := range []bool{false, true} {
		txs := scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
		opts := []scopedriver.Option{scopedriver.Bind(txs)}
		if complete {
			opts = append(opts, scopedriver.CompleteTx(txs))
		}
		workers := river.NewWorkers()
		river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[handsArgs]) error {
			ran.add(job.ID, job.Attempt)
			insert := func(s *scoped.ScopedSession[pgx.Tx], id int64) error {
				tx, err := s.Current(ctx)
				if err != nil {
					return err
				}
				_, err = tx.Exec(ctx, "INSERT INTO "+table+" (job_id, id) VALUES ($1, $2)", job.ID, id)
				return err
			}
			for i, h := range job.Args.Hands {
				s := txs
				if !job.Args.Same {
					s = hands[i]
				}
				if err := insert(s, handIDs[h]+int64(i)); err != nil {
					return err
				}
				err := s.Commit(ctx)
				switch {
				case h == "saved" && err != nil,
					h == "unknown" && !errors.Is(err, scoped.ErrCommitUnknown),
					h == "lost" && (err == nil || errors.Is(err, scoped.ErrCommitUnknown)):
					// The test's own failure: say so in River's record.
					return river.JobCancel(fmt.Errorf("hands test: hand commit %q returned %v", h, err))
				}
			}
			return insert(txs, lastID)
		}))
		cfg := e.clientConfig(workers, rec, scopedriver.NewMiddleware(opts...))
		cfg.Queues = map[string]river.QueueConfig{queue[complete]: {MaxWorkers: 10}}
		e.startClient(t, cfg)
	}
	inserter, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{Logger: quietLogger(), Schema: e.schema})
	if err != nil {
		t.Fatal(err)
	}
	params := make([]river.InsertManyParams, len(cases))
	for i, c := range cases {
		params[i] = river.InsertManyParams{Args: c.args, InsertOpts: &river.InsertOpts{Queue: queue[c.complete], MaxAttempts: 3}}
	}
	res, err := inserter.InsertMany(dbtest.Ctx(t), params)
	if err != nil {
		t.Fatal(err)
	}
	for i := range cases {
		cases[i].job = res[i].Job.ID
	}
	e.awaitDrained(t, dbtest.Bound)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			unknown := slices.Contains(c.args.Hands, "unknown")
			var state, recorded string
			if err := e.pool.QueryRow(dbtest.Ctx(t), "SELECT state::text, coalesce(errors[array_length(errors, 1)]->>'error', '') FROM "+
				e.schema+".river_job WHERE id = $1", c.job).Scan(&state, &recorded); err != nil {
				t.Fatal(err)
			}
			// Every hand commit that saved, then the job's last row: the
			// unknown and lost ones rolled back.
			var want []int64
			for i, h := range c.args.Hands {
				if h == "saved" {
					want = append(want, handIDs[h]+int64(i))
				}
			}
			want = append(want, lastID)
			if got := outcomeIDs(t, e, table, c.job); !slices.Equal(got, want) {
				t.Errorf("rows %v, want %v", got, want)
			}
			if got := ran.of(c.job); len(got) != 1 {
				t.Errorf("Work ran %d times (attempts %v), want once: part of the job is or may be saved", len(got), got)
			}
			if state != "cancelled" {
				t.Errorf("job %s (last error %q), want cancelled: part of its work is or may be lost, and part is or may be saved", state, recorded)
			}
			if !strings.Contains(recorded, "not run again") {
				t.Errorf("River recorded %q, want why the job is not run again", recorded)
			}
			err := rec.of(c.job)
			var cancel *rivertype.JobCancelError
			if !errors.As(err, &cancel) {
				t.Errorf("Work = %v, want a *rivertype.JobCancelError", err)
			}
			if sentinel := scoped.ErrPartiallyCommitted; unknown && !errors.Is(err, scoped.ErrCommitUnknown) ||
				!unknown && !errors.Is(err, sentinel) {
				t.Errorf("Work = %v, want it to wrap %v", err, map[bool]error{true: scoped.ErrCommitUnknown, false: sentinel}[unknown])
			}
		})
	}
}
