package scoped

import (
	"context"
	"errors"
	"math/rand/v2"
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
	if c.retries <= 1 || scopeFrom(ctx) != nil && !c.independent {
		return runOnce(ctx, fn, c.independent)
	}
	var err error
	for attempt := 1; ; attempt++ {
		err = runOnce(ctx, fn, c.independent)
		if err == nil || attempt >= c.retries || !MayRetry(err, c.retryable) {
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

func runOnce(ctx context.Context, fn func(ctx context.Context) error, independent bool) (err error) {
	var s *Scope
	if independent {
		ctx, s = BeginIndependent(ctx)
	} else {
		ctx, s = Begin(ctx)
	}
	returned := false
	defer func() {
		if !returned {
			_ = s.Remove() // a panic (or Goexit): roll back, then let it go on
		}
	}()
	ferr := fn(ctx)
	returned = true
	if ferr != nil {
		if rerr := s.Remove(); rerr != nil {
			return errors.Join(ferr, rerr)
		}
		return ferr
	}
	return s.Commit()
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

// WithRetry makes a root [Run] run fn again, in a fresh scope, when the
// unit of work failed with an error retryable accepts (from fn or from the
// commit: PostgreSQL reports many serialization failures at COMMIT) and
// nothing of it was saved (see [MayRetry]: a unit with two sessions whose
// first committed is never run again), up to
// maxAttempts runs in all, with a jittered exponential pause between them,
// and never past ctx's end. scopedsql.Retryable and scopedpgx.Retryable
// accept serialization failures and deadlocks, the errors that SERIALIZABLE
// isolation and CockroachDB-style distributed SQL return routinely.
//
// fn must be safe to run again: everything it did in the database is
// rolled back between attempts, but what it did elsewhere (sent a mail,
// called a service) is not. A Run inside a scope is never retried on its
// own: its outermost unit of work is what can be run again.
func WithRetry(maxAttempts int, retryable func(error) bool) RunOption {
	if maxAttempts < 1 {
		panic("scoped: WithRetry with maxAttempts < 1")
	}
	if retryable == nil {
		panic("scoped: WithRetry with nil retryable")
	}
	return runOptionFunc(func(c *runConfig) { c.retries, c.retryable = maxAttempts, retryable })
}

// Independent makes [Run] begin a new root scope even inside a scope, as
// [BeginIndependent] does: fn's sessions are its own (a transaction of its
// own, on a connection of its own), committed or rolled back when fn
// returns, whatever the caller's unit of work does later. Use it for work
// that must survive the caller's rollback, such as an audit row; mind that
// it takes a second connection from the pool while the caller holds one.
func Independent() RunOption {
	return runOptionFunc(func(c *runConfig) { c.independent = true })
}
