package scoped

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// entry is one session of a ScopedSession[S], from creation to end.
type entry[S any] struct {
	node
	r *ScopedSession[S]
	s S
	// A child scope's part of its ancestor's session (nest.go); nil for
	// sessions the factory made.
	nested     *Nested[S]
	parentNode *node
	ev         *sessionEvents // WithEventHook only
}

// sessionEvents is what the event hook needs to know of a session across
// its steps, allocated only when there is a hook.
type sessionEvents struct {
	id   uint64
	born time.Time
}

func (r *ScopedSession[S]) newEntry(stripe uint32) *entry[S] {
	e := &entry[S]{r: r}
	e.owner = &r.owner
	e.self = e
	e.stripe = stripe
	return e
}

func (e *entry[S]) committable() bool {
	if e.nested != nil {
		return true
	}
	return !e.shared && e.r.td.commit != nil
}

// child reports whether e is a child scope's part of an ancestor's session
// rather than a session of its own.
func (e *entry[S]) child() bool { return e.nested != nil || e.shared }

// create runs the factory for e, which the caller has registered as
// pending in st, and settles e in st whatever happens: a factory error or
// panic unregisters it (the panic goes on to the caller), and a store that
// closed meanwhile gets the new session ended at once.
func (e *entry[S]) create(caller, ctx, endCtx context.Context, st store) (s S, err error) {
	r := e.r
	scope, _ := st.(*Scope)
	ctx = e.node.factoryContext(ctx, caller, scope)
	child := scope
	if child != nil && child.parent == nil {
		child = nil
	}
	returned := false
	var start time.Time
	if r.events != nil {
		start = time.Now()
	}
	defer func() {
		if !returned {
			err := fmt.Errorf("%w: %s", ErrFactoryPanicked, r.name)
			if child == nil {
				r.stats.createFailed.add(e.stripe, 1)
			}
			st.fail(&e.node, err)
			if e.tracked {
				untrack(&e.node)
			}
			if r.events != nil && child == nil {
				r.emit(ctx, Event{Kind: Failed, Start: start, Duration: time.Since(start), Err: err})
			}
		}
	}()
	if child != nil {
		s, err = e.join(ctx, child)
	} else {
		s, err = r.factory(ctx)
	}
	returned = true
	if err != nil {
		if child == nil {
			r.stats.createFailed.add(e.stripe, 1)
			err = fmt.Errorf("scoped: create %s session: %w", r.name, err)
		}
		st.fail(&e.node, err)
		if e.tracked {
			untrack(&e.node)
		}
		if r.events != nil && child == nil {
			r.emit(ctx, Event{Kind: Failed, Start: start, Duration: time.Since(start), Err: err})
		}
		var zero S
		return zero, err
	}
	e.s = s
	if child == nil {
		r.stats.created.add(e.stripe, 1)
	}
	if r.events != nil && !e.shared {
		e.ev = &sessionEvents{id: sessionIDs.Add(1), born: time.Now()}
		r.emit(ctx, Event{Kind: Created, ID: e.ev.id, Nested: e.nested != nil, Start: start, Duration: e.ev.born.Sub(start)})
	}
	if perr := st.publish(&e.node); perr != nil {
		var zero S
		return zero, errors.Join(perr, e.end(endCtx, false))
	}
	return s, nil
}

// end commits (if asked and possible) or rolls back the session, then
// closes it. It runs exactly once per session, by whoever took the entry
// out of its store, with no lock held. Its error reaches the hook and the
// counters; with [WithTeardownTimeout], it returns once the bound has
// passed even if the session's teardown has not.
func (e *entry[S]) end(ctx context.Context, commit bool) (err error) {
	r := e.r
	if e.tracked {
		untrack(&e.node)
	}
	var start time.Time
	if r.events != nil && !e.shared {
		start = time.Now()
	}
	if e.child() {
		// Not a session of its own: it counts in no Stats.
		commit = commit && e.nested != nil
		err, e.commitFailed = e.endNested(ctx, commit)
		if err != nil {
			r.report(ctx, err)
		}
		if r.events != nil && !e.shared {
			e.emitEnd(ctx, start, commit, err)
		}
		return err
	}
	commit = commit && r.td.commit != nil
	var poisoned *error
	if commit {
		if poisoned = e.poisoned.Load(); poisoned != nil {
			commit = false // roll back what is left of it: nothing of it may be saved
		}
	}
	if r.timeout > 0 {
		err, e.commitFailed = e.endWithin(ctx, commit, r.timeout)
	} else {
		err, e.commitFailed = e.teardown(ctx, commit)
	}
	if poisoned != nil {
		err = errors.Join(fmt.Errorf("scoped: %s session rolled back instead of committed, a nested unit of work left it unusable: %w", r.name, *poisoned), err)
		e.commitFailed = true
	}
	if r.events != nil {
		e.emitEnd(ctx, start, commit, err)
	}
	switch {
	case err != nil:
		r.stats.endFailed.add(e.stripe, 1)
		r.report(ctx, err)
	case commit:
		r.stats.committed.add(e.stripe, 1)
	default:
		r.stats.rolledBack.add(e.stripe, 1)
	}
	return err
}

// emitEnd reports the end of e to the event hook.
func (e *entry[S]) emitEnd(ctx context.Context, start time.Time, commit bool, err error) {
	now := time.Now()
	ev := Event{Nested: e.nested != nil, Commit: commit, Start: start, Duration: now.Sub(start), Err: err}
	if e.ev != nil { // nil when the scope ended while the factory ran: no Created was sent
		ev.ID, ev.Lifetime = e.ev.id, now.Sub(e.ev.born)
	}
	switch {
	case err != nil:
		ev.Kind = Failed
	case commit:
		ev.Kind = Committed
	case e.nested != nil || e.r.td.rollback != nil:
		ev.Kind = RolledBack
	default:
		ev.Kind = Closed
	}
	e.r.emit(ctx, ev)
}

// teardown runs the session's commit or rollback, then its close. A
// panicking teardown is reported as an error so that the sessions after
// it still end; commitFailed says the commit did not return nil.
func (e *entry[S]) teardown(ctx context.Context, commit bool) (err error, commitFailed bool) {
	r, td := e.r, &e.r.td
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
	go func() {
		defer cancel()
		err, failed := e.teardown(tctx, commit)
		done <- result{err, failed}
	}()
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
		e.r.report(ctx, fmt.Errorf("scoped: ending %s session finished after its %v bound: %w", e.r.name, d, late))
	}()
	if commit {
		return fmt.Errorf("scoped: commit %s session: %w after %v: %w", e.r.name, ErrTeardownTimeout, d, ErrCommitUnknown), true
	}
	return fmt.Errorf("scoped: end %s session: %w after %v", e.r.name, ErrTeardownTimeout, d), false
}
