package scoped

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Run runs fn as one unit of work. Outside any scope it begins a root
// scope, runs fn in it, commits the scope when fn returns nil and rolls it
// back otherwise; a panic rolls back and goes on. Inside a scope it does
// the same in a child scope, which joins the sessions of its ancestors
// (see [WithNesting]): fn's work is a savepoint of the caller's
// transaction, undone alone when fn fails and kept, but not committed,
// when it succeeds; the outermost unit of work decides.
//
//	err := scoped.Run(ctx, func(ctx context.Context) error {
//		tx, err := txs.Current(ctx)
//		...
//		return err
//	})
//
// fn's error comes back unchanged for [errors.Is] and [errors.As], joined
// with the errors of ending the scope. A commit that fails is returned as
// [Scope.Commit] returns it.
func Run(ctx context.Context, fn func(ctx context.Context) error, opts ...RunOption) error {
	var c runConfig
	for _, o := range opts {
		c = o.applyRun(c) // by value: a pointer would make c escape, an allocation per Run
	}
	if parent := scopeFrom(ctx); parent != nil && !c.independent {
		_, err := runOnce(ctx, parent, fn, runConfig{}, true)
		if c.retries > 1 && MayRetry(err, c.retryable) {
			askRetry(parent, err)
		}
		return err
	}
	var err error
	for attempt := 1; ; attempt++ {
		var again bool
		again, err = runOnce(ctx, nil, fn, c, attempt >= c.retries)
		if c.retries <= 1 || attempt >= c.retries || !again && !MayRetry(err, c.retryable) {
			return err
		}
		t := time.NewTimer(backoff(attempt))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, context.Cause(ctx))
		}
	}
}

// runOnce runs fn in a scope of its own, a child of parent or a root
// (keeping ctx's values and cancellation), and ends it. A root that
// retries (c.retries > 1) reads the request of a Run inside it to be run
// again (see [Scope.RetryRequested]); unless last, it then rolls back,
// whatever fn returned, and reports again.
func runOnce(ctx context.Context, parent *Scope, fn func(ctx context.Context) error, c runConfig, last bool) (again bool, err error) {
	s := newScope(ctx, parent, 0)
	ctx = s.context()
	returned := false
	defer func() {
		if !returned {
			_ = s.Remove() // a panic (or Goexit): roll back, then let it go on
		}
	}()
	ferr := fn(ctx)
	returned = true
	if c.retries > 1 {
		if asked := s.RetryRequested(); asked != nil && !last {
			if ferr == nil {
				ferr = asked
			}
			again = true
		}
	}
	if ferr != nil {
		rerr := s.Remove()
		if c.retries > 1 {
			// Run again, the unit would save what a hand commit saved twice.
			if saved, _, unknown := s.awaitPartial(); saved || unknown {
				why := errSavedByHand
				if !saved {
					why = errMaybeSavedByHand
				}
				again, ferr = false, errors.Join(ferr, why)
			}
		}
		if rerr != nil {
			return again, errors.Join(ferr, rerr)
		}
		return again, ferr
	}
	return false, s.Commit()
}

// errSavedByHand is joined to the error of a unit that failed after one of
// its sessions was committed by hand: part of its work is saved, so it is
// not run again ([MayRetry]).
var errSavedByHand = fmt.Errorf("%w: a session of the unit was committed by hand (ScopedSession.Commit) before it failed; it is not run again", ErrPartiallyCommitted)

var errMaybeSavedByHand = fmt.Errorf("%w: a session of the unit was committed by hand (ScopedSession.Commit) with an unknown outcome before it failed; it is not run again", ErrCommitUnknown)

// A retryRequest is what a Run inside a scope leaves on the scopes
// enclosing it when it failed with an error its [WithRetry] accepts: only
// the outermost unit of work can be run again.
type retryRequest struct {
	err  error
	pc   uintptr // the Run's call site, for the warning when nothing retries
	read atomic.Bool
}

// askRetry records err as a request to run again the units of work that
// enclose s, s included; the first request stands.
func askRetry(s *Scope, err error) {
	var pc [1]uintptr
	runtime.Callers(3, pc[:]) // Run's caller
	r := &retryRequest{err: err, pc: pc[0]}
	for ; s != nil; s = s.parent {
		s.mu.Lock()
		if u := s.unitOf(); u.retry == nil {
			u.retry = r
		}
		s.mu.Unlock()
	}
}

// RetryRequested returns the error of a unit of work inside s that asked
// for s's unit to be run again, or nil: a [Run] with [WithRetry] inside
// s failed with an error its classifier accepts, having saved nothing
// (see [MayRetry]); a Run inside a scope cannot retry on its own (see
// [WithRetry]). Whatever owns s and can run it again calls RetryRequested
// after the unit's code returned and, when it is not nil, rolls s back
// and runs the unit again in a fresh scope, even if the code swallowed
// the error. A root scope that ends with a request nobody read logs a
// warning with log/slog, once per call site of the Run.
func (s *Scope) RetryRequested() error {
	r := s.retryRequest()
	if r == nil {
		return nil
	}
	r.read.Store(true)
	return r.err
}

func (s *Scope) retryRequest() *retryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unit == nil {
		return nil
	}
	return s.unit.retry
}

// warnedRetry holds the call sites already warned about by
// warnRetryUnread.
var warnedRetry sync.Map // file:line -> struct{}

// warnRetryUnread tells of a root scope ending with a request to run it
// again that nothing read: its owner cannot retry. A scope whose context
// ended is not warned about: nothing would retry it either way.
func (s *Scope) warnRetryUnread() {
	r := s.retryRequest()
	if r == nil || r.read.Load() || s.parentCtx.Err() != nil {
		return
	}
	f, _ := runtime.CallersFrames([]uintptr{r.pc}).Next()
	at := fmt.Sprintf("%s:%d", f.File, f.Line)
	if _, seen := warnedRetry.LoadOrStore(at, struct{}{}); seen {
		return
	}
	slog.Default().Warn("scoped: a Run with WithRetry inside a unit of work failed with a retryable error, "+
		"but nothing retries the outermost unit (a middleware or interceptor without WithRetry, "+
		"scoped.Begin, or a Run without WithRetry): its error went to its caller, not retried",
		"at", at, "function", f.Function, "err", r.err)
}

// MayRetry reports whether a unit of work that failed with err may be run
// again: retryable accepts err, and none of the unit's work was or may
// have been saved. A unit whose end committed something
// ([ErrPartiallyCommitted], [ErrCommittedCloseFailed]) or may have
// ([ErrCommitUnknown]) is never run again, whatever retryable says of the
// cause: a second run would save that work twice. It is the rule of
// [WithRetry], and of the RPC packages' answer that invites a client to
// retry.
func MayRetry(err error, retryable func(error) bool) bool {
	return err != nil &&
		!errors.Is(err, ErrPartiallyCommitted) &&
		!errors.Is(err, ErrCommittedCloseFailed) &&
		!errors.Is(err, ErrCommitUnknown) &&
		retryable(err)
}

// backoff is the pause before retry attempt+1: exponential from 5 ms,
// capped at 1 s, with full jitter between half and all of it, so that
// transactions that conflicted do not meet again at the same instant.
func backoff(attempt int) time.Duration {
	d := 5 * time.Millisecond << min(attempt-1, 8)
	d = min(d, time.Second)
	return d/2 + rand.N(d/2+1)
}

// A RunOption configures [Run].
type RunOption interface{ applyRun(runConfig) runConfig }

type runConfig struct {
	retries     int
	retryable   func(error) bool
	independent bool
}

type runOptionFunc func(*runConfig)

func (f runOptionFunc) applyRun(c runConfig) runConfig { f(&c); return c }

// WithRetry makes a root [Run] run fn again, in a fresh scope, up to
// maxAttempts runs in all, with a jittered exponential pause between them
// and never past ctx's end, when the unit of work failed with an error
// retryable accepts (from fn or from the commit: PostgreSQL reports many
// serialization failures at COMMIT) and nothing of it was saved (see
// [MayRetry]): a unit with two sessions whose first committed is never
// run again, nor one with a session committed by hand, whatever that
// commit's outcome (once a hand commit still running on another goroutine
// has ended). scopedsql.Retryable and scopedpgx.Retryable accept
// serialization failures and deadlocks, the errors that SERIALIZABLE
// isolation and CockroachDB-style distributed SQL return routinely.
//
// fn must be safe to run again: everything it did in the database is
// rolled back between attempts, but what it did elsewhere (sent a mail,
// called a service) is not.
//
// A Run inside a scope (a service function called from a handler, a job,
// another unit) is never retried on its own: the transaction it is a
// savepoint of is aborted (PostgreSQL) or rolled back (MySQL) by a
// serialization failure, so only the outermost unit of work can be run
// again. When it fails with an error
// retryable accepts, it returns that error and asks its root to run
// again (see [Scope.RetryRequested]); maxAttempts then only needs to be
// above 1, the root's own bounds the attempts. Roots that retry: a root
// Run with WithRetry, and the middleware of scopedhttp and the unary
// interceptors of scopedgrpc and scopedconnect given their WithRetry.
// Any other root (scoped.Begin, a Run without WithRetry, a middleware
// without WithRetry) does not: the error goes to the caller as it is,
// and a warning is logged, once per call site, when that root ends.
func WithRetry(maxAttempts int, retryable func(error) bool) RunOption {
	if maxAttempts < 1 {
		panic("scoped: WithRetry with maxAttempts < 1")
	}
	if retryable == nil {
		panic("scoped: WithRetry with nil retryable")
	}
	return runOptionFunc(func(c *runConfig) { c.retries, c.retryable = maxAttempts, retryable })
}

// Independent makes [Run] begin a new root scope even inside a scope,
// keeping ctx's values and cancellation: fn's sessions are its own (a
// transaction of its own, on a connection of its own), which ctx's scope
// neither joins nor ends, committed or rolled back when fn
// returns, whatever the caller's unit of work does later. Use it for work
// that must survive the caller's rollback, such as an audit row; mind that
// it takes a second connection from the pool while the caller holds one.
func Independent() RunOption {
	return runOptionFunc(func(c *runConfig) { c.independent = true })
}
