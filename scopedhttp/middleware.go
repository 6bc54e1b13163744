package scopedhttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/unithooks"
	"github.com/go-scoped/scoped/shared/bindings"
	"github.com/go-scoped/scoped/shared/rpcscope"
)

// Middleware returns a middleware that gives every request its own
// [scoped.Scope], ends it when the handler returns (or panics), and, in
// the automatic modes, commits it according to the status the handler set
// before anything but a 1xx leaves the server. Its shape,
// func(http.Handler) http.Handler, fits net/http, chi and most routers.
//
// It panics if two [Bind] options name different ScopedSessions of the
// same session type.
func Middleware(opts ...Option) func(http.Handler) http.Handler {
	cfg := config{onError: DefaultErrorHandler, limit: DefaultBufferLimit, uncommitted: logUncommitted, bodyLimit: DefaultRetryBodyLimit}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.attempts > 0 && cfg.commit == nil {
		panic("scopedhttp: WithRetry needs an automatic commit mode (WithCommitMode(Autocommit) or WithCommitPolicy): " +
			"in Manual mode the response is not held, so a failed run's response cannot be discarded")
	}
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("scopedhttp: Middleware(...)(nil)")
		}
		h := &handler{next: next, cfg: cfg}
		h.pool.New = func() any { return new(held) }
		return h
	}
}

type handler struct {
	next    http.Handler
	cfg     config
	pool    sync.Pool // *held, at most cfg.limit bytes of body each
	grpcLog sync.Once
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if h.cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.timeout)
		defer cancel()
	}
	if h.cfg.attempts == 0 {
		h.serve(ctx, w, r, nil)
		return
	}
	rt := &retrier{}
	if r.Body != nil && r.Body != http.NoBody {
		rt.body = &replay{src: r.Body, limit: h.cfg.bodyLimit}
	}
	for rt.attempt = 1; ; rt.attempt++ {
		if !h.serve(ctx, w, r, rt) {
			return
		}
		if !rpcscope.Pause(ctx, rt.attempt) {
			// The failed run's response is gone; the request ended before
			// another could commit.
			h.cfg.onError(w, r, notSaved(ctx, nil))
			return
		}
	}
}

// serve runs the handler once, in a scope of its own, and ends it. Under
// WithRetry (rt not nil) it returns true, having answered nothing, when
// the run must be followed by another.
func (h *handler) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, rt *retrier) (again bool) {
	// Begin, not BeginWithoutSafetyNet: when the client goes away (or the
	// timeout passes), the core rolls back at once the sessions that may
	// be ended from another goroutine, so their locks and connections are
	// not held for a client that left. Sessions created WithoutSafetyNet
	// end when the handler returns.
	ctx, scope := scoped.Begin(ctx)
	ctx = bindings.Apply(ctx, h.cfg.bound)
	r = r.WithContext(ctx)
	if rt != nil && rt.body != nil {
		r.Body = rt.body.reader()
	}
	base := writer{req: r, scope: scope, h: h}
	if h.cfg.commit != nil {
		base.held = h.pool.Get().(*held)
		base.held.snapshot(w.Header())
	}
	sw, rw := newWriter(w, base)
	returned := false
	defer func() {
		if !returned {
			// A panic (or runtime.Goexit): roll back, drop the held
			// response and let the panic go on, unrecovered and with its
			// stack, to the server or a recoverer. Whatever answers, it
			// does so once the panic has left: the unit's hooks run
			// after, on a goroutine of their own.
			unithooks.Hold(scope)
			_ = scope.Remove()
			sw.release()
			if unithooks.Pending(scope) {
				go unithooks.Run(scope)
			}
		}
	}()
	h.next.ServeHTTP(rw, r)
	returned = true
	unithooks.Hold(scope) // the unit's hooks run after the answer (hooks.go)
	defer func() { sw.runHooks(again) }()
	if sw.held == nil {
		sw.finishManual()
		return false
	}
	return sw.finish(rt)
}

// release returns the held buffer to the pool, unless it has grown past
// the limit.
func (w *writer) release() {
	b := w.held
	if b == nil {
		return
	}
	w.held = nil
	b.reset()
	if cap(b.body) <= w.h.cfg.limit {
		w.h.pool.Put(b)
	}
}

// finishManual ends a Manual-mode request: whatever the handler did not
// commit is rolled back, and a success status over rolled-back sessions
// is reported. Only sessions with a commit count: a pinned connection
// left open saved its statements as they ran, and closing it undoes
// nothing.
func (w *writer) finishManual() {
	if w.state != hijacked && w.scope.Err() == nil && w.scope.Committable() > 0 && w.h.cfg.uncommitted != nil {
		status := w.status
		if status == 0 {
			status = http.StatusOK
		}
		if status >= 200 && status < 400 {
			w.h.cfg.uncommitted(w.req, status)
		}
	}
	_ = w.scope.Remove()
}

// finish decides an automatic-mode request when the handler has returned:
// by the status it set, commits or rolls back, then sends the held
// response, the error handler's, or, for a response already streaming
// whose commit failed, aborts it.
func (w *writer) finish(rt *retrier) (again bool) {
	defer w.release()
	if w.state == hijacked {
		_ = w.scope.Remove() // already done at the hijack
		return false
	}
	ctx := w.req.Context()
	// Under WithRetry, a run may be followed by another while nothing of
	// its response left the server and the handler did not end the scope.
	retry := rt.again(&w.h.cfg) && w.state == holding && w.scope.Err() == nil && ctx.Err() == nil
	if rt != nil && w.scope.RetryRequested() != nil && retry && !unithooks.SavedByHand(w.scope) {
		// A unit inside asked for the request to run again: whatever the
		// handler answered, its work is rolled back and its answer dropped.
		_ = w.scope.Remove()
		w.held.restore(w.ResponseWriter.Header())
		return true
	}
	status := w.status
	if status == 0 {
		status = http.StatusOK // what net/http sends for a handler that wrote nothing
	}
	commit, abort := w.h.cfg.commit(status), false
	if commit && w.scope.Err() == nil && w.scope.Committable() > 0 && isGRPC(w.ResponseWriter.Header()) {
		// Only an RPC with something to commit is looked into: one that
		// used no session goes out as it is, whatever its protocol.
		commit, abort = w.grpcCommit()
	}
	var err error
	switch {
	case w.scope.Err() != nil:
		// The scope ended before the handler returned: the handler ended
		// it itself (its response stands), or the client went away (or
		// the deadline passed) and the safety net rolled it back, which
		// Err says with ErrScopeCancelled. Remove waits until a teardown
		// still running on the net's goroutine has finished.
		cancelled := errors.Is(w.scope.Err(), scoped.ErrScopeCancelled)
		_ = w.scope.Remove()
		if commit && cancelled {
			err = notSaved(ctx, w.scope)
		}
	case !commit:
		_ = w.scope.Remove() // errors reach the sessions' teardown hooks
	// Only sessions with a commit have changes to lose: a pinned
	// connection saved its statements as they ran.
	case ctx.Err() != nil && w.scope.Committable() > 0:
		_ = w.scope.Remove()
		err = notSaved(ctx, w.scope)
	case w.broken != nil && w.scope.Committable() > 0:
		_ = w.scope.Remove()
		err = rolledBack(w.scope, fmt.Errorf("scopedhttp: the streamed response could not be sent (%w)", w.broken))
	default:
		if cerr := w.scope.Commit(); cerr != nil {
			if rt != nil && scoped.MayRetry(cerr, w.h.cfg.retryable) {
				if retry {
					w.held.restore(w.ResponseWriter.Header())
					return true
				}
				cerr = fmt.Errorf("%w: %w", errRetryable, cerr)
			}
			err = commitError(ctx, w.scope, cerr)
		}
	}
	if err == nil && !abort {
		w.send()
		return false
	}
	if w.state == streaming {
		// The status and part of the body are out: all that is left is to
		// make sure the client never reads a complete response.
		w.release()
		w.abort()
	}
	if err == nil {
		err = errGRPCUnreadable
	}
	w.held.restore(w.ResponseWriter.Header())
	w.h.cfg.onError(w.ResponseWriter, w.req, err)
	return false
}

// commitError words the outcome of a failed Scope.Commit. A commit the
// safety net pre-empted (the request's context ended between the check
// and the commit) rolled back: nothing was saved.
func commitError(ctx context.Context, scope *scoped.Scope, err error) error {
	if errors.Is(err, scoped.ErrScopeCancelled) || errors.Is(err, scoped.ErrScopeClosed) && ctx.Err() != nil {
		return notSaved(ctx, scope)
	}
	if committed(err) {
		return nil // saved; the close error has reached the teardown hook
	}
	return fmt.Errorf("scopedhttp: %w", err)
}

// notSaved is the error of a request that ended (client gone, deadline)
// before its scope was committed: it was rolled back, all of it unless
// the handler had committed a session by hand (scope, when not nil).
func notSaved(ctx context.Context, scope *scoped.Scope) error {
	return rolledBack(scope, fmt.Errorf("scopedhttp: request ended before the commit (%w)", context.Cause(ctx)))
}

// rolledBack words cause, the reason the scope's sessions were rolled
// back instead of committed: nothing was saved, or, after a session was
// committed by hand (ScopedSession.Commit), part of the request was, and
// the client must not be told "not saved" (it would send the request
// again and save that part twice).
func rolledBack(scope *scoped.Scope, cause error) error {
	if scope != nil && unithooks.UnknownByHand(scope) {
		return fmt.Errorf("%w, the rest rolled back after a session's commit by hand of unknown outcome: %w", cause, scoped.ErrCommitUnknown)
	}
	if scope != nil && unithooks.SavedByHand(scope) {
		return fmt.Errorf("%w, the rest rolled back after a session was committed by hand: %w", cause, scoped.ErrPartiallyCommitted)
	}
	return fmt.Errorf("%w, changes rolled back: %w", cause, scoped.ErrNotCommitted)
}

// committed reports whether a commit error says the work was saved all
// the same: every commit succeeded and only a close failed afterwards.
func committed(err error) bool {
	return errors.Is(err, scoped.ErrCommittedCloseFailed) &&
		!errors.Is(err, scoped.ErrPartiallyCommitted) && !errors.Is(err, scoped.ErrNotCommitted)
}

// send writes the held response.
func (w *writer) send() {
	if w.state != holding {
		return
	}
	w.lengthForHooks()
	if w.status != 0 {
		w.writeHeldHeader()
	}
	if len(w.held.body) > 0 {
		_, _ = w.ResponseWriter.Write(w.held.body) // the client's problem now: nothing left to decide
	}
}

// logUncommitted is the default of [WithUncommittedHook]: a request with
// a method that usually changes something (not GET, HEAD, OPTIONS or
// TRACE) answered with success while its changes were rolled back.
func logUncommitted(r *http.Request, status int) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return
	}
	slog.Default().WarnContext(r.Context(), "scopedhttp: the handler answered success in Manual mode but did not commit; its changes were rolled back",
		"method", r.Method, "path", r.URL.Path, "status", status)
}
