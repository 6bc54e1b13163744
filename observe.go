package scoped

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// What a ScopedSession is told at construction (options) and what it
// tells (teardown errors, events, Stats, leak tracking).

// An Option configures a [ScopedSession] at construction. Options are
// resolved once, in [New]; nothing is re-merged per call.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	noNet     bool
	name      string
	scopeFunc ScopeFunc
	hook      func(ctx context.Context, err error)
	hookSet   bool
	events    func(ctx context.Context, e Event)
	timeout   time.Duration
	// Teardown overrides, each a func(context.Context, S) error checked
	// against S in New. set distinguishes "override with nil" from "absent".
	commit, rollback, close teardownOverride
	nest                    teardownOverride // WithNesting
}

// WithName names the sessions in errors, logs and [ScopedSession.String].
// The default is the session type, such as "*sql.Tx".
func WithName(name string) Option {
	return optionFunc(func(c *config) { c.name = name })
}

// WithoutSafetyNet keeps the safety net (see [Scope]) away from this
// ScopedSession's sessions, for session types that must not be ended on
// another goroutine while a query may still run on them, such as a pinned
// *pgxpool.Conn. A scope holding such a session has no safety net at all:
// it must be removed, as defer scope.Remove() does.
func WithoutSafetyNet() Option {
	return optionFunc(func(c *config) { c.noNet = true })
}

// WithScopeFunc replaces the default [ScopeFunc] ([ScopeToken]). See
// [ScopeFunc] for how sessions under a custom key live and end.
func WithScopeFunc(f ScopeFunc) Option {
	if f == nil {
		panic("scoped: WithScopeFunc(nil)")
	}
	return optionFunc(func(c *config) { c.scopeFunc = f })
}

// WithTeardownErrorHook sets the function that sees every error of ending
// a session: failed commits, rollbacks and closes, including those of the
// cancellation safety net that no caller receives. Errors returned by
// [Scope.Remove] and friends are passed to it as well, so that a plain
// defer scope.Remove() loses nothing. The default logs them with
// [log/slog.Default] at level Error; nil discards them.
func WithTeardownErrorHook(f func(ctx context.Context, err error)) Option {
	return optionFunc(func(c *config) { c.hook, c.hookSet = f, true })
}

func (o *owner) logTeardownError(ctx context.Context, err error) {
	slog.Default().ErrorContext(ctx, "scoped: session teardown failed", "session", o.name, "error", err)
}

// report passes a teardown error to the hook. A panicking hook must not
// stop the teardown of the sessions after this one, so its panic is
// logged, not propagated.
func (o *owner) report(ctx context.Context, err error) {
	if o.hook == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			slog.Default().ErrorContext(ctx, "scoped: teardown error hook panicked",
				"session", o.name, "panic", fmt.Sprint(p), "error", err)
		}
	}()
	o.hook(ctx, err)
}

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
	if k >= 0 && int(k) < len(eventKindNames) {
		return eventKindNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

var eventKindNames = [...]string{"created", "committed", "rolled_back", "closed", "failed"}

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
	// Route is which server the session runs on, for a factory that
	// chooses one and says so with [ReportRoute] (scopedpgx and scopedsql
	// with replicas), such as "replica 1" or "primary (replica 1 lags)";
	// empty otherwise.
	Route string
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

// ReportRoute, called by a factory with the context it was given, makes
// the events of the session it creates carry route's answer in
// [Event.Route]. route is called each time one of the session's events is
// reported, on the goroutine reporting it, so that a session that picks
// its server after creation (scopedpgx's BEGIN rides with the first
// statement) reports where it ended up; it must be safe for concurrent
// use. Outside a factory, or for a ScopedSession without
// [WithEventHook], ReportRoute does nothing.
func ReportRoute(ctx context.Context, route func() string) {
	if n := creatingNode(ctx); n != nil && n.owner.events != nil {
		n.owner.ends.setRoute(n, route) // before the factory returns: published with the session
	}
}

func (r *ScopedSession[S]) setRoute(n *node, route func() string) {
	entryOf[S](n).extraState().route = route
}

func (e *entry[S]) routeName() string {
	if e.extra == nil || e.extra.route == nil {
		return ""
	}
	return e.extra.route()
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

// Stats are the counters of one [ScopedSession]. Every field is
// monotonic except Live.
type Stats struct {
	Live       int64 // sessions created and not yet ended
	Created    int64 // factory calls that returned a session
	Committed  int64 // sessions ended by a successful commit
	RolledBack int64 // sessions ended by rollback or close without error
	Failed     int64 // factory errors and panics, failed commits, rollbacks and closes
}

// LiveScopes returns the number of scopes begun and not yet ended, across
// the whole process.
func LiveScopes() int64 { return liveScopes.Load() }

var liveScopes atomic.Int64

// counters are the counters behind [Stats]. Live is derived, so that
// creating and ending a session cost one atomic add each.
type counters struct {
	created, committed, rolledBack atomic.Int64
	createFailed, endFailed        atomic.Int64
}

func (c *counters) snapshot() Stats {
	// Read the ends before the creations, so that a session ending
	// concurrently can never make Live negative.
	st := Stats{
		Committed:  c.committed.Load(),
		RolledBack: c.rolledBack.Load(),
	}
	endFailed := c.endFailed.Load()
	st.Created = c.created.Load()
	st.Failed = c.createFailed.Load() + endFailed
	st.Live = st.Created - st.Committed - st.RolledBack - endFailed
	return st
}

// Leak tracking: which scopes and keyed sessions were begun and never
// ended, and where. Off by default; while no tracker runs, it costs one
// atomic load per scope begun.

// A Leak is a scope still open, or a session under a custom ScopeFunc key
// still held, when a [Track]er stopped.
type Leak struct {
	What  string // "scope" or the session's name
	Where string // file:line of the call that began it (the caller's, outside this package)
}

func (l Leak) String() string { return l.What + " begun at " + l.Where + " was never ended" }

// Track starts recording where scopes are begun (Begin, Detach,
// BeginWithoutSafetyNet) and keyed sessions created, across the process,
// until [Tracker.Stop]; [Tracker.Open] lists those still open. It is meant for tests (each record reads the stack); the
// scopedtest package wraps it as a one-line check. Trackers may overlap.
func Track() *Tracker {
	t := &Tracker{open: map[any]trackRec{}}
	trackMu.Lock()
	trackers = append(trackers, t)
	trackMu.Unlock()
	tracking.Add(1)
	return t
}

// A Tracker records scopes and keyed sessions; see [Track].
type Tracker struct {
	open map[any]trackRec // *Scope or *node → where; under trackMu
}

var (
	tracking atomic.Int32 // running trackers: while none runs, a Begin costs this load
	trackMu  sync.Mutex   // guards trackers, trackSeq and every Tracker
	trackers []*Tracker
	trackSeq uint64
)

type trackRec struct {
	seq  uint64
	leak Leak
}

// Open returns the scopes and keyed sessions recorded and not yet ended,
// oldest first.
func (t *Tracker) Open() []Leak {
	trackMu.Lock()
	recs := slices.Collect(maps.Values(t.open))
	trackMu.Unlock()
	slices.SortFunc(recs, func(a, b trackRec) int { return cmp.Compare(a.seq, b.seq) })
	leaks := make([]Leak, len(recs))
	for i, r := range recs {
		leaks[i] = r.leak
	}
	return leaks
}

// Stop ends the recording; Open then lists what was open when it stopped.
func (t *Tracker) Stop() {
	trackMu.Lock()
	defer trackMu.Unlock()
	if i := slices.Index(trackers, t); i >= 0 {
		trackers = slices.Delete(trackers, i, i+1)
		tracking.Add(-1)
	}
}

// track records x (a *Scope or a keyed *node) in every running tracker.
// It reports whether it did, so that the end needs no lookup otherwise.
func track(x any, what string) bool {
	return tracking.Load() != 0 && trackNow(x, what) // inlined: a Begin with no Tracker pays one load
}

func trackNow(x any, what string) bool {
	where := callerOutside()
	trackMu.Lock()
	defer trackMu.Unlock()
	trackSeq++
	for _, t := range trackers {
		t.open[x] = trackRec{seq: trackSeq, leak: Leak{What: what, Where: where}}
	}
	return len(trackers) > 0
}

// untrack forgets x in every running tracker.
func untrack(x any) {
	trackMu.Lock()
	defer trackMu.Unlock()
	for _, t := range trackers {
		delete(t.open, x)
	}
}

// callerOutside returns file:line of the first frame outside this package.
func callerOutside() string {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, funcPrefix) {
			return fmt.Sprintf("%s:%d", f.File, f.Line)
		}
		if !more {
			return "unknown"
		}
	}
}

// funcPrefix starts the names of this package's functions, and of no
// sub-package's (those go on with a slash, not a dot).
var funcPrefix = reflect.TypeFor[Scope]().PkgPath() + "."
