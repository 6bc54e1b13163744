package scopedriver

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/unit"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// Middleware is a River worker middleware that runs each job in its own
// [scoped.Scope]. Put it in river.Config.Middleware (for every job) or
// return it from a worker's Middleware method (for one kind).
type Middleware struct {
	river.MiddlewareDefaults
	cfg config
}

var _ rivertype.WorkerMiddleware = (*Middleware)(nil)

// NewMiddleware returns the middleware. Each job's Work runs in a scope
// of its own, begun on the job's context: when Work returns nil the scope
// is committed (with [CompleteTx], together with the job's completion),
// and otherwise rolled back, the error going to River, which retries the
// job as usual, unless part of the job was committed by hand (see
// [Middleware.Work]). A panic rolls the scope back and continues to
// River's own panic handling (after a hand commit, it cancels the job,
// with the panic and its stack in the error). NewMiddleware panics if two [Bind] options
// bind the same session type.
func NewMiddleware(opts ...Option) *Middleware {
	m := &Middleware{}
	for _, o := range opts {
		o.apply(&m.cfg)
	}
	seen := make(map[reflect.Type]bool, len(m.cfg.binds))
	for _, b := range m.cfg.binds {
		if seen[b.typ] {
			panic(fmt.Sprintf("scopedriver: NewMiddleware: two Binds of session type %v; bind one ScopedSession per type", b.typ))
		}
		seen[b.typ] = true
	}
	return m
}

// Work runs doInner, the rest of the job's middleware and its Work, in a
// new scope.
//
// A job that fails (an error, a snooze, a failed completion, a panic)
// after a session of its scope was committed by hand
// (ScopedSession.Commit) is cancelled (river.JobCancel), with an error
// that wraps the job's (or the panic and its stack) and
// [scoped.ErrPartiallyCommitted], or [scoped.ErrCommitUnknown] when that
// commit's outcome is unknown: that part is or may be saved, and River
// would save it again with every attempt, so the job is not run again.
// After a hand commit of unknown outcome the job is cancelled even when
// it succeeds, and [CompleteTx] does not complete it, also when another
// hand commit of the job saved.
//
// A commit that fails after part of the job's work was saved, by a hand
// commit or by the commit of another bound session
// ([scoped.ErrPartiallyCommitted]), cancels the job likewise, with an
// error that wraps the commit's. A commit that saved nothing
// ([scoped.ErrNotCommitted]) leaves the job to River's retry, and so does
// one whose outcome is unknown ([scoped.ErrCommitUnknown]): it may have
// landed, which is why a job without [CompleteTx] must be idempotent.
// When every session committed and only a close failed afterwards
// ([scoped.ErrCommittedCloseFailed]), the work is saved, so the job is
// done and Work returns nil; the close error reaches the session's
// teardown error hook ([scoped.WithTeardownErrorHook]), as every
// teardown error does.
//
// Inside a scope already (the middleware given both to the client and by
// a worker, or any owner that began a scope around the job), the job's
// scope is a child of that one: its hand commits and its commit release
// savepoints and save nothing, so Work never cancels the job for them; the
// enclosing unit's owner decides.
func (m *Middleware) Work(ctx context.Context, job *rivertype.JobRow, doInner func(ctx context.Context) error) (err error) {
	_, nested := scoped.FromContext(ctx)
	// The middleware ends the scope itself, on the job's goroutine, so it
	// has no safety net: one could end a session on another goroutine,
	// when River cancels the job's context, while Work still uses it.
	ctx, scope := scoped.BeginWithoutSafetyNet(ctx)
	for _, b := range m.cfg.binds {
		ctx = b.bind(ctx)
	}
	ended := false
	defer func() {
		if ended {
			return
		}
		// A panic (or runtime.Goexit): roll back and let it go on, with its
		// stack, to River's recovery, which retries the job; unless part of
		// the job was committed by hand, which another attempt would save
		// again: then the job is cancelled, with the panic and its stack.
		_ = scope.Remove()
		if nested || !unit.SavedByHand(scope) {
			return
		}
		if p := recover(); p != nil {
			err = notRunAgain(job, scope, "a session of the job was committed by hand (ScopedSession.Commit) before it panicked",
				fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
		}
	}()

	err = doInner(ctx)
	// After a hand commit of unknown outcome, or one that failed, the job
	// is cancelled (below), not completed with the rest: completed in the
	// transaction that commits, it would stay completed (River cancels
	// only running jobs) while that hand-committed part is, or may be,
	// lost; also when another hand commit saved.
	if err == nil && m.cfg.complete != nil && (nested || !unit.UncertainByHand(scope) && !unit.LostByHand(scope)) {
		err = completeInTx(ctx, m.cfg.complete, job)
	}
	ended = true
	if err != nil {
		if rerr := scope.Remove(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("scopedriver: job %d (%s): rolling back: %w", job.ID, job.Kind, rerr))
		}
		if !nested && unit.SavedByHand(scope) {
			return notRunAgain(job, scope, "a session of the job was committed by hand (ScopedSession.Commit) before it failed", err)
		}
		return err
	}
	switch err := scope.Commit(); {
	case err == nil:
		return nil
	case !nested && errors.Is(err, scoped.ErrPartiallyCommitted):
		return notRunAgain(job, scope, "commit", err)
	case errors.Is(err, scoped.ErrCommittedCloseFailed) && !errors.Is(err, scoped.ErrNotCommitted):
		return nil
	case !nested && unit.SavedByHand(scope):
		// A hand commit saved part of the job, or may have (its outcome
		// unknown): another attempt would save it again.
		return notRunAgain(job, scope, "commit after a hand commit", err)
	default:
		return fmt.Errorf("scopedriver: job %d (%s): commit: %w", job.ID, job.Kind, err)
	}
}
