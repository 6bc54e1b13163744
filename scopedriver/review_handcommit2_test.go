package scopedriver_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// reviewArgs is a job of the review tests below; what its worker does is
// the test's.
type reviewArgs struct{}

func (reviewArgs) Kind() string { return "scopedriver_review_hand" }

func (reviewArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 3} }

// reviewWorker runs work and adds mw as the kind's own middleware.
type reviewWorker struct {
	river.WorkerDefaults[reviewArgs]
	mw   []rivertype.WorkerMiddleware
	work func(ctx context.Context, job *river.Job[reviewArgs]) error
}

func (w *reviewWorker) Middleware(*rivertype.JobRow) []rivertype.WorkerMiddleware { return w.mw }
func (w *reviewWorker) Work(ctx context.Context, job *river.Job[reviewArgs]) error {
	return w.work(ctx, job)
}

// runReviewJob inserts one reviewArgs job, works it with w and mw (the
// client's middleware) until River is done with it, and returns its id.
func runReviewJob(t *testing.T, e *schemaEnv, w *reviewWorker, mw ...rivertype.Middleware) int64 {
	t.Helper()
	workers := river.NewWorkers()
	river.AddWorker(workers, river.Worker[reviewArgs](w))
	ins, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{Logger: quietLogger(), Schema: e.schema})
	if err != nil {
		t.Fatal(err)
	}
	res, err := ins.Insert(dbtest.Ctx(t), reviewArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := e.startClient(t, e.clientConfig(workers, mw...))
	e.awaitDrained(t, dbtest.Bound)
	stopClient(t, client)
	return res.Job.ID
}

// insertRow inserts (job, key) through txs's transaction of ctx.
func insertRow(ctx context.Context, e *schemaEnv, txs *scoped.ScopedSession[pgx.Tx], job, key int64) error {
	tx, err := txs.Current(ctx)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES ($1, $2, $3)", job, key, job*1000+key)
	return err
}

// The middleware given both to the client (every job) and by the worker
// (its kind): the kind's scope is a child of the client's, and a hand
// commit in the job releases a savepoint of the client's transaction,
// saving nothing. A job that then fails saved nothing, so River must run
// it again; it was cancelled instead (SavedByHand of the child said yes),
// and its work was lost for good.
func TestReviewNestedMiddlewareHandReleaseIsRetried(t *testing.T) {
	t.Parallel()
	e := newSchemaEnv(t)
	txs := scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
	var r runs
	w := &reviewWorker{mw: []rivertype.WorkerMiddleware{scopedriver.NewMiddleware(scopedriver.Bind(txs))}}
	w.work = func(ctx context.Context, job *river.Job[reviewArgs]) error {
		r.add(job.ID, job.Attempt)
		if err := insertRow(ctx, e, txs, job.ID, int64(job.Attempt)); err != nil {
			return err
		}
		if err := txs.Commit(ctx); err != nil { // RELEASE SAVEPOINT: the client's middleware's transaction stays open
			return err
		}
		if job.Attempt == 1 {
			return errors.New("attempt 1 fails after its hand release")
		}
		return nil
	}
	id := runReviewJob(t, e, w, scopedriver.NewMiddleware(scopedriver.Bind(txs)))
	if got := r.of(id); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("attempts run %v, want [1 2]: attempt 1 saved nothing", got)
	}
	if got := e.attempts(t, id); !slices.Equal(got, []int{2}) {
		t.Errorf("committed rows by attempt %v, want [2]", got)
	}
	if j := e.job(t, id); j.State != "completed" {
		t.Errorf("job %+v, want completed", j)
	}
}

// What River does with CompleteTx when the final commit is partial: the
// job's transaction, holding its rows and its completion, commits first
// (sessions commit in the order they were taken), then a second bound
// session's commit fails. Work returns river.JobCancel
// (scoped.ErrPartiallyCommitted), but River sets a state only on a row
// still running: the row stays completed, with no error recorded, and
// River logs the cancellation at Debug only. The job is not run again
// (right: its rows are saved), and the second session's failure is seen
// only by its teardown error hook. docs/river.md's "cancels the job" does
// not hold here.
func TestReviewCompleteTxPartialCommitLeavesTheJobCompleted(t *testing.T) {
	t.Parallel()
	e := newSchemaEnv(t)
	txs := scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
	other := &otherSession{fakeSession: fakeSession{commitErr: errors.New("other database refused the commit")}}
	others := scoped.New(func(context.Context) (*otherSession, error) { return other, nil }, scoped.WithTeardownErrorHook(nil))
	var r runs
	w := &reviewWorker{work: func(ctx context.Context, job *river.Job[reviewArgs]) error {
		r.add(job.ID, job.Attempt)
		if err := insertRow(ctx, e, txs, job.ID, int64(job.Attempt)); err != nil {
			return err
		}
		_, err := others.Current(ctx)
		return err
	}}
	id := runReviewJob(t, e, w, scopedriver.NewMiddleware(scopedriver.Bind(txs), scopedriver.Bind(others), scopedriver.CompleteTx(txs)))
	if got := r.of(id); len(got) != 1 {
		t.Errorf("job ran %d times, want once", len(got))
	}
	if got := e.attempts(t, id); !slices.Equal(got, []int{1}) {
		t.Errorf("committed rows by attempt %v, want [1]", got)
	}
	if j := e.job(t, id); j.State != "completed" || j.Errors != 0 {
		t.Errorf("job %+v, want completed with no error recorded (River's update is for running rows only)", j)
	}
	if other.committed != 1 {
		t.Errorf("second session committed %d times, want 1 (refused)", other.committed)
	}
}

// A panic after a hand commit cancels the job, with the panic and its
// stack in the error: River's retry saved the hand-committed part once per
// attempt (rows [1 2 3] with MaxAttempts 3; River's default is 25).
func TestReviewPanicAfterHandCommitIsCancelled(t *testing.T) {
	t.Parallel()
	e := newSchemaEnv(t)
	txs := scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
	var r runs
	w := &reviewWorker{work: func(ctx context.Context, job *river.Job[reviewArgs]) error {
		r.add(job.ID, job.Attempt)
		if err := insertRow(ctx, e, txs, job.ID, int64(job.Attempt)); err != nil {
			return err
		}
		if err := txs.Commit(ctx); err != nil {
			return err
		}
		panic("after the hand commit")
	}}
	id := runReviewJob(t, e, w, scopedriver.NewMiddleware(scopedriver.Bind(txs)))
	if got := e.attempts(t, id); !slices.Equal(got, []int{1}) {
		t.Errorf("committed rows by attempt %v, want [1]: the hand-committed row once", got)
	}
	if j := e.job(t, id); j.State != "cancelled" || j.Attempt != 1 {
		t.Errorf("job %+v, want cancelled after 1 attempt", j)
	}
}

// closeOnly is a session with nothing to commit (a pinned connection):
// its Close fails.
type closeOnly struct{}

func (closeOnly) Close() error { return errors.New("close failed") }

// What Work returns when the job failed its hand commit, went on and
// returned nil, and the scope's commit then saved the rest or nothing,
// with a close failing (584da7a): cancelled when the rest was saved,
// retried when nothing was; never done. And a job that returns
// river.JobCancel after a hand commit is cancelled, with its error.
func TestReviewWorkAfterFailedHandCommitAndCloseFailure(t *testing.T) {
	errHand := errors.New("hand commit refused")
	for _, c := range []struct {
		name   string
		rest   string // "committable": a second transaction that commits, its close failing; "close": a connection whose close fails
		cancel bool
	}{
		{"rest saved", "committable", true},
		{"nothing saved", "close", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			lost := fakeSessions(&fakeSession{commitErr: errHand})
			var mw *scopedriver.Middleware
			var take func(ctx context.Context) error
			if c.rest == "committable" {
				o := &otherSession{fakeSession: fakeSession{closeErr: errors.New("close failed")}}
				others := scoped.New(func(context.Context) (*otherSession, error) { return o, nil }, scoped.WithTeardownErrorHook(nil))
				mw = scopedriver.NewMiddleware(scopedriver.Bind(lost), scopedriver.Bind(others))
				take = func(ctx context.Context) error { _, err := others.Current(ctx); return err }
			} else {
				conns := scoped.New(func(context.Context) (closeOnly, error) { return closeOnly{}, nil }, scoped.WithTeardownErrorHook(nil))
				mw = scopedriver.NewMiddleware(scopedriver.Bind(lost), scopedriver.Bind(conns))
				take = func(ctx context.Context) error { _, err := conns.Current(ctx); return err }
			}
			err := mw.Work(context.Background(), runningJob, func(ctx context.Context) error {
				if _, err := lost.Current(ctx); err != nil {
					return err
				}
				if err := lost.Commit(ctx); !errors.Is(err, errHand) {
					return fmt.Errorf("hand commit = %v, want its failure", err)
				}
				return take(ctx)
			})
			var cancel *rivertype.JobCancelError
			switch {
			case err == nil:
				t.Fatalf("Work = nil: the job is done, its hand-committed work lost")
			case c.cancel && (!errors.As(err, &cancel) || !errors.Is(err, scoped.ErrPartiallyCommitted)):
				t.Errorf("Work = %v, want a JobCancelError wrapping ErrPartiallyCommitted: the rest is saved", err)
			case !c.cancel && (errors.As(err, &cancel) || !errors.Is(err, scoped.ErrNotCommitted)):
				t.Errorf("Work = %v, want an error River retries, wrapping ErrNotCommitted: nothing was saved", err)
			}
		})
	}
	t.Run("JobCancel after a hand commit", func(t *testing.T) {
		f := &fakeSession{}
		sessions := fakeSessions(f)
		errWhy := errors.New("give up")
		err := scopedriver.NewMiddleware(scopedriver.Bind(sessions)).Work(context.Background(), runningJob, func(ctx context.Context) error {
			if _, err := sessions.Current(ctx); err != nil {
				return err
			}
			if err := sessions.Commit(ctx); err != nil {
				return err
			}
			return river.JobCancel(errWhy)
		})
		var cancel *rivertype.JobCancelError
		if !errors.As(err, &cancel) || !errors.Is(err, errWhy) || !errors.Is(err, scoped.ErrPartiallyCommitted) {
			t.Errorf("Work = %v, want a JobCancelError wrapping the job's reason and ErrPartiallyCommitted", err)
		}
	})
}

// nestedFakes is a ScopedSession of fake sessions whose child scopes take
// a savepoint, its release failing with releaseErr.
func nestedFakes[S interface{ *fakeSession | *otherSession }](s S, releaseErr error) *scoped.ScopedSession[S] {
	return scoped.New(func(context.Context) (S, error) { return s, nil }, scoped.WithTeardownErrorHook(nil),
		scoped.WithNesting(func(_ context.Context, p S) (scoped.Nested[S], error) {
			return scoped.Nested[S]{
				Session:  p,
				Release:  func(context.Context) error { return releaseErr },
				Rollback: func(context.Context) error { return nil },
			}, nil
		}))
}

// The nested middleware's own commit releases its savepoints: the first
// released and the second failing saved nothing (the child's error says
// ErrPartiallyCommitted all the same), so the job goes back to River's
// retry, not to a cancellation.
func TestReviewNestedWorkFailedReleaseIsRetried(t *testing.T) {
	errRelease := errors.New("release refused")
	a, b := nestedFakes(&fakeSession{}, nil), nestedFakes(&otherSession{}, errRelease)
	outer := scopedriver.NewMiddleware(scopedriver.Bind(a), scopedriver.Bind(b))
	inner := scopedriver.NewMiddleware(scopedriver.Bind(a), scopedriver.Bind(b))
	err := outer.Work(context.Background(), runningJob, func(ctx context.Context) error {
		return inner.Work(ctx, runningJob, func(ctx context.Context) error {
			if _, err := a.Current(ctx); err != nil {
				return err
			}
			_, err := b.Current(ctx)
			return err
		})
	})
	var cancel *rivertype.JobCancelError
	if err == nil || errors.As(err, &cancel) || !errors.Is(err, errRelease) {
		t.Errorf("Work = %v, want the release's error for River to retry: nothing was saved", err)
	}
}
