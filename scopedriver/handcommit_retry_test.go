package scopedriver_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/go-scoped/scoped/scopedriver"
)

// handArgs is a job that inserts a row, commits it by hand, inserts
// another, then ends as Mode says.
type handArgs struct {
	Mode string `json:"mode"`
}

func (handArgs) Kind() string { return "scopedriver_hand" }

// Three attempts: River would run the job again after its failure.
func (handArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 3} }

const errAfterHand = "fails after its hand commit"

// A job that fails after committing part of its work by hand
// (ScopedSession.Commit) is not run again: River would save that part once
// per attempt. The middleware cancels it; only the first run's hand row
// is saved. A snooze (River's "run me later") is refused likewise.
func TestHandCommitThenFailureIsNotRetried(t *testing.T) {
	t.Parallel()
	for _, completeTx := range []bool{false, true} {
		for _, mode := range []string{"error", "snooze"} {
			t.Run(fmt.Sprintf("CompleteTx=%v/%s", completeTx, mode), func(t *testing.T) {
				t.Parallel()
				e := newSchemaEnv(t)
				txs := scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
				opts := []scopedriver.Option{scopedriver.Bind(txs)}
				if completeTx {
					opts = append(opts, scopedriver.CompleteTx(txs))
				}
				var r runs
				workers := river.NewWorkers()
				river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[handArgs]) error {
					r.add(job.ID, job.Attempt)
					// Keyed by run, not attempt: a snooze runs attempt 1 again.
					run := int64(len(r.of(job.ID)))
					insert := func(key int64) error {
						tx, err := txs.Current(ctx)
						if err != nil {
							return err
						}
						_, err = tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES ($1, $2, $3)",
							job.ID, key, job.ID*1000+key)
						return err
					}
					if err := insert(run); err != nil {
						return err
					}
					if err := txs.Commit(ctx); err != nil {
						return err
					}
					if err := insert(100 + run); err != nil {
						return err
					}
					switch {
					case job.Args.Mode == "error":
						return errors.New(errAfterHand)
					case run == 1:
						return river.JobSnooze(time.Millisecond)
					}
					return nil
				}))
				ins, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{Logger: quietLogger(), Schema: e.schema})
				if err != nil {
					t.Fatal(err)
				}
				res, err := ins.Insert(dbtest.Ctx(t), handArgs{Mode: mode}, nil)
				if err != nil {
					t.Fatal(err)
				}
				id := res.Job.ID
				client := e.startClient(t, e.clientConfig(workers, scopedriver.NewMiddleware(opts...)))
				e.awaitDrained(t, dbtest.Bound)
				stopClient(t, client)

				if got := e.attempts(t, id); !slices.Equal(got, []int{1}) {
					t.Errorf("committed rows by run: %v, want [1] (the first run's hand commit, once)", got)
				}
				if got := r.of(id); len(got) != 1 {
					t.Errorf("job ran %d times (attempts %v), want once", len(got), got)
				}
				if j := e.job(t, id); j.State != "cancelled" {
					t.Errorf("job: %+v, want cancelled", j)
				}
				var recorded string
				if err := e.pool.QueryRow(dbtest.Ctx(t), "SELECT coalesce(errors[array_length(errors, 1)]->>'error', '') FROM "+
					e.schema+".river_job WHERE id = $1", id).Scan(&recorded); err != nil {
					t.Fatal(err)
				}
				want := errAfterHand
				if mode == "snooze" {
					want = "JobSnoozeError"
				}
				if !strings.Contains(recorded, "committed by hand") || !strings.Contains(recorded, want) {
					t.Errorf("River recorded %q, want the job's error (%q) and why it is not run again", recorded, want)
				}
			})
		}
	}
}

// The error Work returns after a hand commit: River's cancellation, with
// the job's error and scoped.ErrPartiallyCommitted inside; a snooze is no
// longer one, or River would run the job again.
func TestWorkAfterHandCommitCancels(t *testing.T) {
	errWork := errors.New("work failed")
	for _, jobErr := range []error{errWork, river.JobSnooze(time.Minute)} {
		f := &fakeSession{}
		sessions := fakeSessions(f)
		m := scopedriver.NewMiddleware(scopedriver.Bind(sessions))
		err := m.Work(context.Background(), runningJob, func(ctx context.Context) error {
			if _, err := sessions.Current(ctx); err != nil {
				return err
			}
			if err := sessions.Commit(ctx); err != nil {
				return err
			}
			return jobErr
		})
		var cancel *rivertype.JobCancelError
		if !errors.As(err, &cancel) {
			t.Fatalf("Work = %v, want a *rivertype.JobCancelError", err)
		}
		if !errors.Is(err, scoped.ErrPartiallyCommitted) {
			t.Errorf("Work = %v, want it to wrap scoped.ErrPartiallyCommitted", err)
		}
		var snooze *rivertype.JobSnoozeError
		if errors.As(err, &snooze) {
			t.Errorf("Work = %v, still a snooze: River would run the job again", err)
		}
		if jobErr == errWork && !errors.Is(err, errWork) {
			t.Errorf("Work = %v, want it to wrap the job's error", err)
		}
		if !strings.Contains(err.Error(), "job 7 (scopedriver_row)") {
			t.Errorf("Work = %q, want it to name the job", err)
		}
		if f.committed != 1 {
			t.Errorf("session committed %d times, want 1 (by hand)", f.committed)
		}
	}
}

// A job that commits part of its work by hand, then returns nil, and whose
// final commit fails, is not run again either: that part is saved, and
// River would save it once more per attempt.
func TestHandCommitThenFailedCommitIsNotRetried(t *testing.T) {
	t.Parallel()
	for _, completeTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("CompleteTx=%v", completeTx), func(t *testing.T) {
			t.Parallel()
			e := newSchemaEnv(t)
			txs := scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
			opts := []scopedriver.Option{scopedriver.Bind(txs)}
			if completeTx {
				opts = append(opts, scopedriver.CompleteTx(txs))
			}
			var r runs
			workers := river.NewWorkers()
			river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[handArgs]) error {
				r.add(job.ID, job.Attempt)
				// The second row repeats the hand row's id: the table's
				// deferred unique key fails the final COMMIT.
				id := job.ID*1000 + int64(job.Attempt)
				insert := func(key int64) error {
					tx, err := txs.Current(ctx)
					if err != nil {
						return err
					}
					_, err = tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES ($1, $2, $3)", job.ID, key, id)
					return err
				}
				if err := insert(int64(job.Attempt)); err != nil {
					return err
				}
				if err := txs.Commit(ctx); err != nil {
					return err
				}
				return insert(100 + int64(job.Attempt))
			}))
			ins, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{Logger: quietLogger(), Schema: e.schema})
			if err != nil {
				t.Fatal(err)
			}
			res, err := ins.Insert(dbtest.Ctx(t), handArgs{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			id := res.Job.ID
			client := e.startClient(t, e.clientConfig(workers, scopedriver.NewMiddleware(opts...)))
			e.awaitDrained(t, dbtest.Bound)
			stopClient(t, client)

			if got := e.attempts(t, id); !slices.Equal(got, []int{1}) {
				t.Errorf("committed rows by attempt: %v, want [1] (the first attempt's hand commit, once)", got)
			}
			if got := r.of(id); len(got) != 1 {
				t.Errorf("job ran %d times (attempts %v), want once", len(got), got)
			}
			if j := e.job(t, id); j.State != "cancelled" {
				t.Errorf("job: %+v, want cancelled", j)
			}
			var recorded string
			if err := e.pool.QueryRow(dbtest.Ctx(t), "SELECT coalesce(errors[array_length(errors, 1)]->>'error', '') FROM "+
				e.schema+".river_job WHERE id = $1", id).Scan(&recorded); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(recorded, "not run again") || !strings.Contains(recorded, "23505") {
				t.Errorf("River recorded %q, want the commit's error (a unique violation) and why it is not run again", recorded)
			}
		})
	}
}

// otherSession is a second session type, so that a job can bind two.
type otherSession struct{ fakeSession }

// The error Work returns when the scope's commit fails after part of it
// was saved, by a hand commit or by another bound session: River's
// cancellation, with the commit's error and scoped.ErrPartiallyCommitted
// inside. A commit that saved nothing is still left to River's retry.
func TestWorkPartiallyCommittedCancels(t *testing.T) {
	errCommit := errors.New("commit refused")
	for name, work := range map[string]func(t *testing.T) (*scopedriver.Middleware, func(ctx context.Context) error){
		"after a hand commit": func(t *testing.T) (*scopedriver.Middleware, func(ctx context.Context) error) {
			f := &fakeSession{}
			sessions := fakeSessions(f)
			return scopedriver.NewMiddleware(scopedriver.Bind(sessions)), func(ctx context.Context) error {
				if _, err := sessions.Current(ctx); err != nil {
					return err
				}
				if err := sessions.Commit(ctx); err != nil {
					return err
				}
				f.commitErr = errCommit // the scope's own commit of the next session fails
				_, err := sessions.Current(ctx)
				return err
			}
		},
		"after another session committed": func(t *testing.T) (*scopedriver.Middleware, func(ctx context.Context) error) {
			failing, other := &fakeSession{commitErr: errCommit}, &otherSession{}
			a := fakeSessions(failing)
			b := scoped.New(func(context.Context) (*otherSession, error) { return other, nil }, scoped.WithTeardownErrorHook(nil))
			return scopedriver.NewMiddleware(scopedriver.Bind(a), scopedriver.Bind(b)), func(ctx context.Context) error {
				// The scope commits its sessions in the order they were
				// taken: other, then failing.
				if _, err := b.Current(ctx); err != nil {
					return err
				}
				_, err := a.Current(ctx)
				return err
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			m, inner := work(t)
			err := m.Work(context.Background(), runningJob, inner)
			var cancel *rivertype.JobCancelError
			if !errors.As(err, &cancel) {
				t.Fatalf("Work = %v, want a *rivertype.JobCancelError", err)
			}
			if !errors.Is(err, scoped.ErrPartiallyCommitted) || !errors.Is(err, errCommit) {
				t.Errorf("Work = %v, want it to wrap scoped.ErrPartiallyCommitted and the commit's error", err)
			}
			if !strings.Contains(err.Error(), "job 7 (scopedriver_row)") || !strings.Contains(err.Error(), "not run again") {
				t.Errorf("Work = %q, want it to name the job and say it is not run again", err)
			}
		})
	}
}

// A hand commit whose outcome is unknown (its COMMIT sent, the connection
// lost before the answer) may have saved that part: the unit's commit of
// the rest then says scoped.ErrCommitUnknown, and River must not run the
// job again, which would save the part once more if it had landed.
func TestWorkAfterAnUnknownHandCommitIsNotRunAgain(t *testing.T) {
	errLost := fmt.Errorf("%w: connection reset", scoped.ErrCommitUnknown)
	f := &fakeSession{commitErr: errLost}
	sessions := fakeSessions(f)
	m := scopedriver.NewMiddleware(scopedriver.Bind(sessions))
	err := m.Work(context.Background(), runningJob, func(ctx context.Context) error {
		if _, err := sessions.Current(ctx); err != nil {
			return err
		}
		_ = sessions.Commit(ctx) // unknown: the job goes on, as after any failed hand commit
		f.commitErr = nil
		_, err := sessions.Current(ctx) // the rest, committed by the scope
		return err
	})
	var cancel *rivertype.JobCancelError
	if !errors.As(err, &cancel) {
		t.Fatalf("Work = %v, want a *rivertype.JobCancelError: another attempt would save the hand-committed part again", err)
	}
	if !errors.Is(err, scoped.ErrCommitUnknown) {
		t.Errorf("Work = %v, want it to wrap scoped.ErrCommitUnknown", err)
	}
}
