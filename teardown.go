package scoped

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/go-scoped/scoped/internal/connlost"
	"github.com/go-scoped/scoped/internal/sqlconn"
)

// How a session ends: its type's teardown (detected once, in New, or set
// by options), run exactly once per session with panic safety and an
// optional time bound, and what the outcome means for the work.

// teardown holds how sessions of one type end. Each func may be nil.
type teardown[S any] struct {
	commit, rollback, close func(context.Context, S) error
}

// The interfaces a session type is upgraded through, the way database/sql
// detects optional driver capabilities.
type (
	// ctxTx is a pgx-style transaction: pgx.Tx, or anything with the same shape.
	ctxTx interface {
		Commit(ctx context.Context) error
		Rollback(ctx context.Context) error
	}
	// plainTx is a database/sql-style transaction: *sql.Tx, *sqlx.Tx.
	plainTx interface {
		Commit() error
		Rollback() error
	}
	// releaser is a pooled connection that goes back with Release, like *pgxpool.Conn.
	releaser interface{ Release() }
)

// defaultTeardown detects, once per ScopedSession, how sessions of type S end.
func defaultTeardown[S any]() teardown[S] {
	var td teardown[S]
	t := reflect.TypeFor[S]()
	switch {
	case t.Implements(reflect.TypeFor[ctxTx]()):
		td.commit = func(ctx context.Context, s S) error { return any(s).(ctxTx).Commit(ctx) }
		td.rollback = func(ctx context.Context, s S) error { return any(s).(ctxTx).Rollback(ctx) }
	case t.Implements(reflect.TypeFor[plainTx]()):
		td.commit = func(_ context.Context, s S) error { return commitLost(any(s).(plainTx).Commit()) }
		td.rollback = func(_ context.Context, s S) error {
			// A transaction its user already committed or rolled back by hand
			// has nothing left to undo, and neither has one whose connection
			// the driver found broken (as after a query cancelled when its
			// client went away): the server aborts the transaction of a
			// session that ends. Other failures stay loud.
			// A context error is never the rollback's own either (Rollback
			// takes none): go-sql-driver/mysql returns the cancelled
			// statement's error for every later call on the connection it
			// closed.
			err := any(s).(plainTx).Rollback()
			if err == nil || errors.Is(err, sql.ErrTxDone) || errors.Is(err, driver.ErrBadConn) ||
				errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil
			}
			return err
		}
	}
	switch {
	case t == reflect.TypeFor[*sql.Conn]():
		td.close = func(ctx context.Context, s S) error { return closeConn(ctx, any(s).(*sql.Conn)) }
	case t.Implements(reflect.TypeFor[io.Closer]()):
		td.close = func(_ context.Context, s S) error { return any(s).(io.Closer).Close() }
	case t.Implements(reflect.TypeFor[releaser]()):
		td.close = func(_ context.Context, s S) error { any(s).(releaser).Release(); return nil }
	}
	return td
}

// closeConn is the default teardown of a pinned *sql.Conn. Not Close,
// which waits for an unclosed *sql.Rows or a *sql.Tx begun on the
// connection, and database/sql ends those only when their context is
// done: never, for context.Background, and for a request's, only after
// its handler returned, that is after the scope's end. A connection found
// in use is discarded instead (internal/sqlconn), and the error says what
// was left open.
//
// Unless the scope's context has ended: then the safety net (or a Remove
// after the client left) finds the query that the cancellation is
// stopping, or a Rows that database/sql is closing, still on the
// connection. Discarding it is the cost of not waiting; reporting it would
// blame the user's code for a client that went away.
func closeConn(ctx context.Context, c *sql.Conn) error {
	err := sqlconn.Close(c)
	if err != nil && errors.Is(err, sqlconn.ErrInUse) && scopeDone(ctx) {
		return nil
	}
	return err
}

// scopeDone reports whether the context of ctx's scope has ended.
func scopeDone(ctx context.Context) bool {
	s := scopeFrom(ctx)
	return s != nil && s.parentCtx.Err() != nil
}

func init() { sqlconn.ScopeDone = scopeDone }

type teardownOverride struct {
	set bool
	fn  any
	via string // the option's name, for the panic message
}

// WithCommit overrides how a session is committed by [Scope.Commit] and
// [ScopedSession.Commit]. nil makes sessions not committable: they are
// rolled back or closed instead. S must be the session type of the
// [ScopedSession]; New panics otherwise.
func WithCommit[S any](f func(ctx context.Context, s S) error) Option {
	return teardownOption[S]("WithCommit", f, func(c *config) *teardownOverride { return &c.commit })
}

// WithRollback overrides how a session that is not committed is rolled
// back when its scope ends. nil means there is nothing to roll back.
func WithRollback[S any](f func(ctx context.Context, s S) error) Option {
	return teardownOption[S]("WithRollback", f, func(c *config) *teardownOverride { return &c.rollback })
}

// WithClose overrides how a session is closed after its commit or
// rollback (for example [database/sql.Conn.Close]). nil means there is
// nothing to close.
func WithClose[S any](f func(ctx context.Context, s S) error) Option {
	return teardownOption[S]("WithClose", f, func(c *config) *teardownOverride { return &c.close })
}

func teardownOption[S any](via string, f func(context.Context, S) error, field func(*config) *teardownOverride) Option {
	return optionFunc(func(c *config) {
		*field(c) = teardownOverride{set: true, fn: f, via: fmt.Sprintf("%s[%v]", via, reflect.TypeFor[S]())}
	})
}

// resolve turns an override into a function of the session type, or
// keeps the default when the option was not given.
func resolve[S any](o teardownOverride, def func(context.Context, S) error) func(context.Context, S) error {
	if !o.set {
		return def
	}
	f, ok := o.fn.(func(context.Context, S) error)
	if !ok {
		panic(fmt.Sprintf("scoped: %s given to a ScopedSession[%v]", o.via, reflect.TypeFor[S]()))
	}
	return f
}

// WithTeardownTimeout bounds how long ending one session (its commit or
// rollback, then its close) may hold the caller: the teardown gets a
// context with that deadline, and past it the caller stops waiting and
// gets an error wrapping [ErrTeardownTimeout] (for a commit, also
// [ErrCommitUnknown]: the commit may still land). pgx honours the deadline
// (it closes the connection); database/sql's Commit and Rollback take no
// context, so for them the teardown goes on, on a goroutine of its own,
// until the driver returns, holding its connection, and its late outcome
// reaches the teardown error hook. Bound those at the driver too:
// go-sql-driver/mysql's readTimeout and writeTimeout DSN parameters; for
// lib/pq, which has none, a pq.NewConnector whose dialer sets TCP
// keepalives and TCP_USER_TIMEOUT (which end connections to a dead peer,
// not to a live proxy that stops answering).
//
// The default is no bound, which costs nothing; with a bound, each end
// costs a goroutine and a timer. d <= 0 means no bound.
func WithTeardownTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.timeout = d })
}

// commitLost wraps a database/sql-style commit error in ErrCommitUnknown
// when it says the connection was lost rather than that the server refused
// the commit (or that the server itself does not know the outcome): such a
// commit may have been saved. The core knows the standard library's errors
// (a broken connection, EOF, a network error that is not the caller's
// context); scopedsql adds the drivers' own (internal/connlost).
func commitLost(err error) error {
	if err != nil && (connlost.CommitUnknown(err) || stdlibLost(err)) {
		return fmt.Errorf("%w: %w", ErrCommitUnknown, err)
	}
	return err
}

func stdlibLost(err error) bool {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return true
	}
	return errors.As(err, &ne)
}

// end commits (if asked and possible) or rolls back the session, then
// closes it. It runs exactly once per session, by whoever took the entry
// out of its store, with no lock held. Its error reaches the hook and the
// counters; with [WithTeardownTimeout], it returns once the bound has
// passed even if the session's teardown has not.
func (r *ScopedSession[S]) end(n *node, ctx context.Context, commit bool) (err error) {
	e := entryOf[S](n)
	if e.tracked {
		untrack(&e.node)
	}
	if e.shared {
		return nil // a child's share of its ancestor's session: the ancestor ends it
	}
	var start time.Time
	if r.events != nil {
		start = time.Now()
	}
	if e.extra != nil && e.extra.isNested {
		// Not a session of its own: it counts in no Stats.
		err, e.commitFailed = e.endNested(ctx, commit)
		if err != nil {
			r.report(ctx, err)
		}
		if r.events != nil {
			e.emitEnd(ctx, start, commit, err)
		}
		return err
	}
	commit = commit && r.td.commit != nil
	asked := commit // what the events say, even when the commit becomes a rollback
	var poisoned *error
	if commit {
		if poisoned = e.poisoned.Load(); poisoned != nil {
			commit = false // roll back what is left of it: nothing of it may be saved
		}
	}
	returned := false
	defer func() {
		if !returned {
			// The teardown called runtime.Goexit (t.FailNow in a fake): the
			// goroutine goes on exiting, but the end is counted and told.
			r.stats.endFailed.Add(1)
			if r.events != nil {
				e.emitEnd(ctx, start, asked, fmt.Errorf("scoped: ending %s session: its teardown called runtime.Goexit", r.name))
			}
		}
	}()
	if r.timeout > 0 {
		err, e.commitFailed = e.endWithin(ctx, commit, r.timeout)
	} else {
		err, e.commitFailed = e.teardown(ctx, commit)
	}
	returned = true
	if poisoned != nil {
		err = errors.Join(fmt.Errorf("scoped: %s session rolled back instead of committed, a nested unit of work left it unusable: %w", r.name, *poisoned), err)
		e.commitFailed = true
	}
	if r.events != nil {
		e.emitEnd(ctx, start, asked, err)
	}
	switch {
	case err != nil:
		r.stats.endFailed.Add(1)
		r.report(ctx, err)
	case commit:
		r.stats.committed.Add(1)
	default:
		r.stats.rolledBack.Add(1)
	}
	return err
}

// emitEnd reports the end of e to the event hook.
func (e *entry[S]) emitEnd(ctx context.Context, start time.Time, commit bool, err error) {
	now := time.Now()
	x := e.extra
	nested := x != nil && x.isNested
	ev := Event{Nested: nested, Commit: commit, Start: start, Duration: now.Sub(start), Err: err, Route: e.routeName()}
	if x != nil && x.id != 0 { // 0 when the scope ended while the factory ran: no Created was sent
		ev.ID, ev.Lifetime = x.id, now.Sub(x.born)
	}
	switch {
	case err != nil:
		ev.Kind = Failed
	case commit:
		ev.Kind = Committed
	case nested || e.r().td.rollback != nil:
		ev.Kind = RolledBack
	default:
		ev.Kind = Closed
	}
	e.r().emit(ctx, ev)
}

// teardown runs the session's commit or rollback, then its close. A
// panicking teardown is reported as an error so that the sessions after
// it still end; commitFailed says the commit did not return nil.
func (e *entry[S]) teardown(ctx context.Context, commit bool) (err error, commitFailed bool) {
	r, td := e.r(), &e.r().td
	defer func() {
		if p := recover(); p != nil {
			err = errors.Join(err, fmt.Errorf("scoped: ending %s session panicked: %v", r.name, p))
		}
	}()
	if commit {
		commitFailed = true // until the commit returns nil: a panic is a failed commit too
		if cerr := td.commit(ctx, e.s); cerr != nil {
			err = fmt.Errorf("scoped: commit %s session: %w", r.name, cerr)
		} else {
			commitFailed = false
		}
	} else if td.rollback != nil {
		if rerr := td.rollback(ctx, e.s); rerr != nil {
			err = fmt.Errorf("scoped: roll back %s session: %w", r.name, rerr)
		}
	}
	if td.close != nil {
		if cerr := td.close(ctx, e.s); cerr != nil {
			err = errors.Join(err, fmt.Errorf("scoped: close %s session: %w", r.name, cerr))
		}
	}
	return err, commitFailed
}

// endWithin is teardown bounded by d: the teardown gets a context with
// that deadline and runs on a goroutine of its own, so that one which does
// not honour contexts (database/sql's Commit and Rollback take none) still
// cannot hold the caller past d. Past d the caller gets ErrTeardownTimeout
// (and, for a commit, ErrCommitUnknown: it may still land); the goroutine
// goes on until the driver returns, and what it returns then reaches the
// hook.
func (e *entry[S]) endWithin(ctx context.Context, commit bool, d time.Duration) (error, bool) {
	type result struct {
		err          error
		commitFailed bool
	}
	done := make(chan result, 1)
	tctx, cancel := context.WithTimeout(ctx, d)
	go teardownAside(func() {
		defer cancel()
		err, failed := e.teardown(tctx, commit)
		done <- result{err, failed}
	})
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case res := <-done:
		return res.err, res.commitFailed
	case <-t.C:
	}
	go func() { // report the late outcome, which no caller waits for any more
		res := <-done
		late := errors.New("succeeded")
		if res.err != nil {
			late = res.err
		}
		e.r().report(ctx, fmt.Errorf("scoped: ending %s session finished after its %v bound: %w", e.r().name, d, late))
	}()
	if commit {
		return fmt.Errorf("scoped: commit %s session: %w after %v: %w", e.r().name, ErrTeardownTimeout, d, ErrCommitUnknown), true
	}
	return fmt.Errorf("scoped: end %s session: %w after %v", e.r().name, ErrTeardownTimeout, d), false
}

// committable reports whether n's session has a commit of its own to run:
// a nested part (its release), or a session whose type commits.
func (r *ScopedSession[S]) committable(n *node) bool {
	e := entryOf[S](n)
	if e.extra != nil && e.extra.isNested {
		return true
	}
	return !e.shared && r.td.commit != nil
}

// endNode ends one session: every end of a session, and so all the user
// code a teardown runs, goes through its ScopedSession's end, the frame
// inTeardown looks for.
func endNode(n *node, ctx context.Context, commit bool) error {
	return n.owner.ends.end(n, ctx, commit)
}

// teardownAside runs a bounded teardown on a goroutine of its own
// (endWithin), under a frame inTeardown finds as it finds a session's end.
//
//go:noinline
func teardownAside(f func()) { f() }

// inTeardown reports whether the caller runs inside a session's end
// ((*ScopedSession[S]).end, called through an interface, never inlined;
// or teardownAside) on this goroutine. Only an end of a scope that would
// otherwise wait for another end in progress asks, which is rare: Go has
// no other goroutine identity, and Remove and Commit get no context. It
// cannot tell which scope's teardown runs: a teardown that ends an
// unrelated scope does not wait for ends in progress on other goroutines
// either (see Scope.Remove).
func inTeardown() bool {
	pcs := make([]uintptr, 256)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if f.Function == asideFunc ||
			strings.HasPrefix(f.Function, endPrefix) && strings.HasSuffix(f.Function, "]).end") {
			return true
		}
		if !more {
			return false
		}
	}
}

var (
	endPrefix = reflect.TypeFor[Scope]().PkgPath() + ".(*ScopedSession["
	asideFunc = reflect.TypeFor[Scope]().PkgPath() + ".teardownAside"
)

// endNodes ends sessions listed newest first. With commit, committable
// sessions are committed in creation order until a commit fails;
// everything not committed is then rolled back and closed, newest first.
// The joined error says what the failure means for the work (classify);
// before, when not nil, is the outcome a hand end decided earlier (a
// failed hand commit, or one of unknown outcome), unless a commit here
// fails.
func endNodes(ctx context.Context, nodes []*node, commit bool, errs []error, committedBefore bool, before error) error {
	commitFailed, committed := false, committedBefore
	if commit {
		for i := len(nodes) - 1; i >= 0; i-- {
			n := nodes[i]
			if !n.owner.ends.committable(n) {
				continue
			}
			n.ended = true
			err := endNode(n, ctx, true)
			if n.commitFailed {
				errs = append(errs, err)
				commitFailed = true
				break
			}
			if err != nil {
				errs = append(errs, err) // a close failing after a commit that succeeded stops nothing
			}
			committed = true
		}
	}
	for _, n := range nodes {
		if n.ended {
			continue
		}
		n.ended = true
		if err := endNode(n, ctx, false); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 && before == nil {
		return nil // every end succeeded, and no hand end decided otherwise before
	}
	err := errors.Join(errs...)
	if commitFailed && !committed && errors.Is(before, ErrCommitUnknown) {
		// Nothing was saved for sure; a hand commit may have saved.
		return fmt.Errorf("%w: %w", errUnknownByHand, err)
	}
	if before != nil && commit && !commitFailed {
		// Every commit here succeeded, but a hand end before decided the
		// outcome (scope.go): one sentinel, with what failed here, if
		// anything (a close).
		if err == nil {
			return before
		}
		return fmt.Errorf("%w: %w", before, err)
	}
	return classify(err, commit, commitFailed, committed)
}

// classify wraps the error of ending sessions with what it means for the
// work, so that callers (scopedhttp's answer, a job's retry) can tell a
// commit that failed from one that landed: see [ErrNotCommitted],
// [ErrPartiallyCommitted] and [ErrCommittedCloseFailed]. commitFailed says
// that a commit returned an error (or panicked); committedBefore, that
// another session of the same end had committed before it.
func classify(err error, commit, commitFailed, committedBefore bool) error {
	switch {
	case err == nil || !commit:
		return err
	case !commitFailed:
		return fmt.Errorf("%w: %w", ErrCommittedCloseFailed, err)
	case committedBefore:
		return fmt.Errorf("%w: %w", ErrPartiallyCommitted, err)
	case errors.Is(err, ErrCommitUnknown):
		// Not "nothing was committed": the commit may have landed.
		return err
	}
	return fmt.Errorf("%w: %w", ErrNotCommitted, err)
}
