package scoped

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// An EventKind is one step in a session's life, as reported to the hook
// set by [WithEventHook].
type EventKind int

const (
	// Created: the factory returned a session (or a child scope nested in
	// its ancestor's). Duration is the factory's.
	Created EventKind = iota
	// Committed: the session ended by a commit that succeeded (for a
	// nested part: a release). Duration covers the commit and the close.
	Committed
	// RolledBack: the session ended by a rollback that succeeded.
	RolledBack
	// Closed: the session had nothing to commit or roll back (a pinned
	// connection) and was closed without error.
	Closed
	// Failed: the factory failed or panicked (no session was created), or
	// ending the session failed; Err says why.
	Failed
)

// String returns the kind's name in lower case, as metrics label it.
func (k EventKind) String() string {
	switch k {
	case Created:
		return "created"
	case Committed:
		return "committed"
	case RolledBack:
		return "rolled_back"
	case Closed:
		return "closed"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// An Event is one step of one session's life.
type Event struct {
	Kind    EventKind
	Session string // the ScopedSession's name ([WithName])
	// ID identifies the session across its events: the Created event and
	// the end event (Committed, RolledBack, Closed or Failed) of one
	// session carry the same ID. It is 0 for a factory that failed.
	ID       uint64
	Nested   bool          // a child scope's part of its ancestor's session
	Commit   bool          // the end was asked to commit (Failed: the commit failed)
	Start    time.Time     // when the step began
	Duration time.Duration // how long the step took
	Lifetime time.Duration // end events: from creation to the end of the step
	Err      error         // Failed only
}

// WithEventHook sets a function that sees every step of every session of
// the ScopedSession: created, committed, rolled back, closed, failed, with
// durations. It runs on the goroutine that took the step, never while a
// lock of this package is held; a hook that panics is logged and stops
// nothing. It composes with the default teardown (nothing to re-implement)
// and with [WithTeardownErrorHook], which still sees every teardown error.
// Without it, sessions pay for no clock reading. scopedotel builds spans
// and metrics on it.
func WithEventHook(f func(ctx context.Context, e Event)) Option {
	return optionFunc(func(c *config) { c.events = f })
}

// sessionIDs numbers sessions across the process, for Event.ID.
var sessionIDs atomic.Uint64

// emit passes e to the event hook, recovering a panic.
func (o *owner) emit(ctx context.Context, e Event) {
	e.Session = o.name
	defer func() {
		if p := recover(); p != nil {
			slog.Default().ErrorContext(ctx, "scoped: event hook panicked",
				"session", o.name, "event", e.Kind.String(), "panic", fmt.Sprint(p))
		}
	}()
	o.events(ctx, e)
}
