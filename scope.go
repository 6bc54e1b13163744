package scoped

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-scoped/scoped/shared/bound"
)

// A Scope is one unit of work (a request, a job, a test) that owns the
// sessions created for it. Get one from [Begin] or [Detach]; end it with
// [Scope.Remove] or [Scope.Commit].
//
// # Safety net
//
// When the context given to Begin is cancelled and the scope still holds a
// session, the scope is removed (everything rolled back and closed) without
// waiting for Remove. This catches a forgotten Remove; it is not a way to
// end scopes: code still using a session when its context is cancelled
// sees the driver's errors, and a session type that is not safe for
// concurrent use (pgx) must not be in use then: begin such scopes with
// [BeginWithoutSafetyNet] and end them with defer, or create their
// ScopedSession [WithoutSafetyNet]. defer scope.Remove() remains the rule.
// A scope that holds no session registers nothing and costs no teardown
// work. (A begin that asks to be bounded by the net, as scopedsql's does,
// registers it early; if the context is cancelled then, the begin gives
// up and the scope, holding nothing yet, stays open.)
type Scope struct {
	parentCtx context.Context // the context Begin was given
	parent    *Scope

	// sessions lists the scope's ready sessions, newest first, which is
	// the order of their creation. The list is immutable: Current reads
	// it without a lock; under mu it is replaced, never changed.
	sessions atomic.Pointer[link]

	// mu protects the scope's sessions: it is held to replace sessions, to
	// register and settle creations, to end the scope, and for every field
	// below. No user code runs while it is held.
	mu       sync.Mutex
	state    atomic.Uint32 // stEnded (under mu, or by the lock-free end of an untouched scope), stFinished, stWaited, stTouched
	flags    uint8         // noNet ... hookHeld, below
	tracked  bool          // recorded by a Tracker; set before the scope is shared, then only read
	creating *link         // creations in flight: their factories run
	stop     func() bool   // unregisters the safety net
	children *Scope        // open child scopes, newest first
	sibling  *Scope        // the next child of parent; under parent.mu
	// busy is closed when the first ender has finished, once a second
	// ender waits for it (stWaited).
	busy chan struct{}
	unit *unitState // hooks and a request to run again, made on first need (hooks.go)
}

// A link is a cell of a scope's list of sessions (or of creations).
type link struct {
	n    *node
	next *link
}

// Bits of Scope.state.
const (
	stEnded    uint32 = 1 << iota // Remove or Commit began; no session is created any more
	stFinished                    // its teardown is complete
	stWaited                      // a second ender waits on busy
	stTouched                     // something was registered: the end takes mu (touch)
)

// Bits of Scope.flags.
const (
	noNet     uint8 = 1 << iota // BeginWithoutSafetyNet
	armed                       // the safety net is registered, or being registered
	netHeld                     // a session the net may end was created: armed for it, not only for a begin
	netFired                    // the safety net ended the sessions it may end; the scope is still open
	byNet                       // the safety net ended the whole scope
	hookHeld                    // the owner runs the hooks after answering (hooks.go)
	netEnding                   // the net decided to end the whole scope: no WithoutSafetyNet session may join
)

func newScope(ctx context.Context, parent *Scope, flags uint8) *Scope {
	s := &Scope{parentCtx: ctx, parent: parent, flags: flags}
	// Counted before its parent has it: once adopted, the parent's end
	// may end it on another goroutine.
	liveScopes.Add(1)
	s.tracked = track(s, "scope")
	if parent != nil && !parent.adopt(s) {
		s.state.Store(stEnded | stFinished)
		s.release()
	}
	return s
}

func (s *Scope) ended() bool { return s.state.Load()&stEnded != 0 }

// touch marks s as holding, or about to hold, something its end must see
// under mu (a creation, a child, hooks), and reports whether s is still
// open. Under s.mu. A scope never touched ends without the lock: its
// state goes from 0 to ended in one compare-and-swap, which a touch
// either precedes (the end then takes the lock) or sees.
func (s *Scope) touch() bool {
	if st := s.state.Load(); st&stTouched != 0 {
		return st&stEnded == 0 // under mu: stEnded is set under it once touched
	}
	return s.state.Or(stTouched)&stEnded == 0
}

// Begin starts a scope and returns a context that carries it. Every
// session a [ScopedSession] creates for this context (or one derived from
// it) belongs to the scope and ends when the scope does:
//
//	ctx, scope := scoped.Begin(ctx)
//	defer scope.Remove()
//
// Begin in a context that already has a scope starts a child scope, a
// unit of work inside its parent's: it joins its ancestors' sessions
// rather than creating its own (a savepoint of the parent's transaction,
// see [WithNesting]), and ends at the latest when the parent does. A child
// begun after its parent ended is born ended (its Current returns
// [ErrScopeClosed]). For a unit with sessions of its own inside a scope
// use [Run] with [Independent]; for work that outlives the scope, [Detach].
//
// Begin itself takes no connection and runs no factory.
func Begin(ctx context.Context) (context.Context, *Scope) {
	if ctx == nil {
		panic("scoped: Begin with nil context")
	}
	s := newScope(ctx, scopeFrom(ctx), 0)
	return s.context(), s
}

// BeginWithoutSafetyNet is [Begin] for callers that always end the scope
// themselves, in the goroutine that uses its sessions, such as a
// middleware that defers Remove around the handler. It registers no
// safety net, so the scope's sessions are never ended on another goroutine
// while a query still runs on them (a pgx.Tx is not safe for that), and
// the scope costs less. A scope begun this way and never removed leaks.
func BeginWithoutSafetyNet(ctx context.Context) (context.Context, *Scope) {
	if ctx == nil {
		panic("scoped: BeginWithoutSafetyNet with nil context")
	}
	s := newScope(ctx, scopeFrom(ctx), noNet)
	return s.context(), s
}

// Detach starts a new root scope for work that outlives ctx's scope, such
// as a goroutine started by a request handler. The new context has ctx's
// values but not its cancellation or deadline, and the new scope shares no
// session with ctx's scope. The goroutine must end it:
//
//	bg, scope := scoped.Detach(r.Context())
//	go func() {
//		defer scope.Remove()
//		// ... users.Current(bg) ...
//	}()
//
// Because the new context is never cancelled, the safety net of [Scope]
// does not apply: a detached scope that is never removed leaks its sessions.
func Detach(ctx context.Context) (context.Context, *Scope) {
	if ctx == nil {
		panic("scoped: Detach with nil context")
	}
	s := newScope(context.WithoutCancel(ctx), nil, 0)
	return s.context(), s
}

// FromContext returns the innermost scope in ctx, if any.
func FromContext(ctx context.Context) (*Scope, bool) {
	s := scopeFrom(ctx)
	return s, s != nil
}

// Len returns the number of sessions the scope holds now.
func (s *Scope) Len() int {
	n := 0
	for c := s.sessions.Load(); c != nil; c = c.next {
		n++
	}
	return n
}

// Committable returns how many of the sessions the scope holds now
// [Scope.Commit] would commit: those with a commit (a transaction), not a
// pinned connection whose statements were saved as they ran, nor a child
// scope's share of its parent's session. It tells a scope that holds
// uncommitted work from one that has nothing to commit, as
// scopedhttp's Manual mode must before it reports a forgotten commit.
func (s *Scope) Committable() int {
	n := 0
	for c := s.sessions.Load(); c != nil; c = c.next {
		if c.n.owner.ends.committable(c.n) {
			n++
		}
	}
	return n
}

// Err reports whether the scope has ended: nil while it is open,
// [ErrScopeClosed] after. After the safety net rolled the scope back
// because its context ended, the error also wraps [ErrScopeCancelled] and
// the context's cause.
func (s *Scope) Err() error {
	if !s.ended() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closedErr()
}

// closedErr is what an ended scope says to Err and to the sessions asked
// of it: why it ended, when the safety net ended it. Under s.mu.
func (s *Scope) closedErr() error {
	if s.flags&byNet != 0 {
		return errNetFired(s)
	}
	return ErrScopeClosed
}

// find returns the ready session of o in s, if any. Lock-free.
func (s *Scope) find(o *owner) *node {
	for c := s.sessions.Load(); c != nil; c = c.next {
		if c.n.owner == o {
			return c.n
		}
	}
	return nil
}

// startCreation registers n, whose factory is about to run. Under s.mu.
func (s *Scope) startCreation(n *node) {
	n.cell = link{n: n, next: s.creating}
	s.creating = &n.cell
}

// endCreation unregisters n, whose factory has returned. Under s.mu.
func (s *Scope) endCreation(n *node) {
	for p := &s.creating; *p != nil; p = &(*p).next {
		if (*p).n == n {
			*p = n.cell.next
			break
		}
	}
	n.cell = link{}
	n.watch = nil // the creation no longer runs: nothing to fire
}

func (s *Scope) publish(n *node) error {
	s.mu.Lock()
	s.endCreation(n)
	if s.ended() || n.owner.noNet && s.flags&netEnding != 0 {
		err := s.closedErr()
		if !s.ended() {
			err = errNetFired(s)
		}
		n.settle(err)
		s.mu.Unlock()
		return err
	}
	n.settle(nil)
	n.cell = link{n: n, next: s.sessions.Load()}
	s.sessions.Store(&n.cell)
	arm := false
	if !n.owner.noNet && !n.shared && s.flags&noNet == 0 {
		// The net is registered once the scope holds something it may end.
		arm = s.flags&armed == 0
		s.flags |= netHeld | armed
	}
	s.mu.Unlock()
	if arm {
		s.arm() // outside s.mu: a context may be the caller's own type
	}
	return nil
}

func (s *Scope) fail(n *node, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endCreation(n)
	n.settle(err)
}

// drop replaces the list of sessions by one without those drop selects,
// and returns them. Under s.mu.
func (s *Scope) drop(buf []*node, drop func(*node) bool) []*node {
	var keep []*node
	for c := s.sessions.Load(); c != nil; c = c.next {
		if drop(c.n) {
			buf = append(buf, c.n)
		} else {
			keep = append(keep, c.n)
		}
	}
	var l *link
	for i := len(keep) - 1; i >= 0; i-- {
		l = &link{n: keep[i], next: l}
	}
	s.sessions.Store(l)
	return buf
}

// take removes the ready session n from the list. Under s.mu. Taking the
// newest session, the common case, allocates nothing.
func (s *Scope) take(n *node) {
	if head := s.sessions.Load(); head != nil && head.n == n {
		s.sessions.Store(head.next)
		return
	}
	s.drop(nil, func(x *node) bool { return x == n })
}

// Remove ends the scope: open child scopes first, then every session the
// scope created, newest first, each rolled back and closed exactly once.
// A failing teardown does not stop the others; their errors are joined.
// Nothing stays registered, and a later Current in the scope returns
// [ErrScopeClosed]. Remove is idempotent and safe to call concurrently;
// a second caller returns nil once the first has finished. An end of one
// of its sessions in progress elsewhere ([ScopedSession.Remove] or
// [ScopedSession.Commit] on another goroutine, the safety net) is waited
// for too; except by a Remove or Commit called from a session's teardown,
// which never waits for another end (it might be waiting for itself): it
// returns [ErrReentrant] when the scope's own end is in progress, and
// does not wait for ends of single sessions.
func (s *Scope) Remove() error { return s.end(false, false) }

// Commit commits every committable session of the scope in creation
// order, then ends the scope as [Scope.Remove] does. The first failing
// commit stops further commits, and the sessions not yet committed are
// rolled back; the error names the session that failed. (A close that
// fails after a successful commit is reported but stops nothing: that
// session's changes are committed.) Open child scopes
// are removed (rolled back), not committed: their owner never decided.
// Commit on a scope that has already ended commits nothing and returns
// [ErrScopeClosed].
func (s *Scope) Commit() error { return s.end(true, false) }

// end is Remove, Commit, and with net the safety net's end of the whole
// scope, which the scope's errors tell from then on (byNet) if it is the
// end that runs: a Commit that came first keeps its outcome.
func (s *Scope) end(commit, net bool) error {
	if s.state.Load() == 0 && s.state.CompareAndSwap(0, stEnded|stFinished) {
		s.release() // never touched: nothing to end, and no one saw it ending
		return nil
	}
	s.mu.Lock()
	if st := s.state.Load(); st&stEnded != 0 {
		s.mu.Unlock()
		return s.endAgain(st, commit)
	}
	if net {
		s.flags |= byNet
	}
	// Only sessions whose creation finished are ours to end; a creation
	// still in flight sees stEnded when it finishes and ends its own.
	var buf [8]*node
	nodes := buf[:0]
	for c := s.sessions.Load(); c != nil; c = c.next {
		nodes = append(nodes, c.n)
	}
	s.sessions.Store(nil)
	stop := s.stop
	s.stop = nil
	if s.creating != nil || s.children != nil || s.unit != nil || s.flags&netFired != 0 {
		return s.endUnit(commit, net, nodes, stop)
	}
	if len(nodes) == 0 && stop == nil {
		// A scope that never held anything ends with its own release:
		// no one saw it ending, so no one waits for it.
		s.state.Store(stEnded | stFinished)
		s.mu.Unlock()
		s.release()
		return nil
	}
	s.state.Or(stEnded)
	s.mu.Unlock()
	defer s.endRest(nodes)
	if stop != nil {
		stop()
	}
	return s.finish(endNodes(s.teardownContext(), nodes, commit, nil, false, nil))
}

// endAgain is an end of a scope whose end another caller began (st): it
// returns once that end has finished.
func (s *Scope) endAgain(st uint32, commit bool) error {
	if st&stFinished == 0 && inTeardown() {
		return errOwnTeardown
	}
	s.awaitEnd()
	if !commit {
		return nil
	}
	// Whatever the scope held was ended before: nothing is committed by
	// this call, and saying nil would claim otherwise; ended by the safety
	// net, it says so, with the cause.
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closedErr()
}

// endRest, deferred by an end, finishes it if a teardown called
// runtime.Goexit (t.FailNow in a fake): it ends the rest, so that no later
// end waits for good (deferred: another teardown here may call Goexit too).
func (s *Scope) endRest(nodes []*node) {
	if s.state.Load()&stFinished == 0 {
		defer s.finish(nil)
		_ = endNodes(s.teardownContext(), nodes, false, nil, false, nil)
	}
}

// endUnit is the end of a scope that holds more than its sessions (nodes,
// taken): creations in flight, child scopes, unit hooks or a request to
// run again, or the sessions the safety net ended. Called with s.mu held.
func (s *Scope) endUnit(commit, net bool, nodes []*node, stop func() bool) error {
	// A begin still running is given up: its session would be ended the
	// moment it exists (net.go).
	byNetEnd := s.flags&byNet != 0
	var fb [2]bound.Target
	fired := s.fireWatches(fb[:0], !net)
	netFiredBefore := s.flags&netFired != 0
	var kids [4]*Scope
	children := kids[:0]
	for c := s.children; c != nil; c = c.sibling {
		children = append(children, c)
	}
	s.children = nil
	if len(nodes) == 0 && len(fired) == 0 && stop == nil && len(children) == 0 && s.unit == nil {
		s.state.Store(stEnded | stFinished)
		s.mu.Unlock()
		s.release()
		return nil
	}
	// Hooks and retry requests come in under mu; once stEnded is set only
	// a child ending below can add hooks. Without both, none are read
	// again.
	unit := s.unit != nil || len(children) > 0
	s.state.Or(stEnded)
	s.mu.Unlock()
	defer s.endRest(nodes)
	if s.parent == nil && unit {
		s.warnRetryUnread()
	}
	s.runWatches(fired, true)
	if stop != nil {
		stop()
	}
	// Read before they end: a child holding no work loses none.
	childWork := len(children) > 0 && holdWork(children)
	var errs []error
	for _, c := range children {
		if byNetEnd {
			c.endedByNet()
		}
		if err := c.end(false, false); err != nil {
			errs = append(errs, err)
		}
	}
	// A child's sessions are parts of its ancestors' (savepoints): one it
	// committed by hand was released, not saved.
	handSaved, lost, unknown := false, false, false
	if unit {
		handSaved, lost, unknown = s.awaitPartial()
		handSaved, unknown = handSaved && s.parent == nil, unknown && s.parent == nil
	}
	if commit && netFiredBefore && (lost || holdsCommittable(nodes)) {
		// The net rolled back part of the scope, or its context ended with
		// work still to commit: committing the rest would save half of the
		// work, for a client that is gone.
		errs = append(errs, errNetFired(s))
		err := endNodes(s.teardownContext(), nodes, false, errs, false, nil)
		outcome := ErrNotCommitted
		switch {
		case handSaved:
			outcome = ErrPartiallyCommitted
		case unknown:
			outcome = ErrCommitUnknown // a hand commit may have saved
		}
		return s.finishHooks(unit, true, fmt.Errorf("%w: %w", outcome, err), false)
	}
	// What a hand commit did before decides the outcome of a commit that
	// saves everything else: a failed one lost work, whatever this commit
	// saves; an unknown one makes the unit's outcome unknown.
	var before error
	switch {
	case commit && lost && (handSaved || holdsCommittable(nodes)) && unknown:
		before = errPartlyLostUnknownByHand
	case commit && lost && (handSaved || holdsCommittable(nodes)):
		before = errPartlyLostByHand
	case commit && unknown:
		before = errUnknownByHand // what else was saved or lost, the outcome is not known
	case commit && lost:
		before = errLostByHand
	}
	err := endNodes(s.teardownContext(), nodes, commit, errs, handSaved, before)
	// Nothing that could have been saved was rolled back, here or by a
	// partial end: if a session was committed by hand, the unit's work is
	// saved (hooks.go), whatever a close without a commit returned.
	byHand := !commit && !childWork && !holdsCommittable(nodes) && !lost
	return s.finishHooks(unit, commit, err, byHand)
}

// savedAll reports whether the error of a commit says that everything it
// committed was saved, and only a close failed afterwards.
func savedAll(err error) bool {
	return errors.Is(err, ErrCommittedCloseFailed) && !errors.Is(err, ErrNotCommitted) && !errors.Is(err, ErrPartiallyCommitted)
}

// errLostByHand is the error of a scope's Commit after a hand commit of one
// of its sessions failed (ScopedSession.Commit): that work was not saved.
var (
	errLostByHand              = fmt.Errorf("%w: a session of the unit failed its commit by hand (ScopedSession.Commit) before the unit's commit", ErrNotCommitted)
	errPartlyLostByHand        = fmt.Errorf("%w: a session of the unit failed its commit by hand (ScopedSession.Commit) before the unit's commit, which saved the rest", ErrPartiallyCommitted)
	errPartlyLostUnknownByHand = fmt.Errorf("%w: %w: a session of the unit failed its commit by hand (ScopedSession.Commit) and another's is of unknown outcome, before the unit's commit, which saved the rest", ErrPartiallyCommitted, ErrCommitUnknown)
	errUnknownByHand           = fmt.Errorf("%w: the outcome of a commit by hand (ScopedSession.Commit) of a session of the unit is unknown", ErrCommitUnknown)
)

// Partial ends are ends of some of a scope's sessions outside its own end:
// [ScopedSession.Remove] and [ScopedSession.Commit], and the safety net's
// end of the sessions it may end. The scope's end waits for those in
// progress before it ends its own sessions, so that it returns with
// everything ended and knows, for its outcome and its hooks, whether a
// session was committed by hand. Counted in the unit state: rare.

// beginPartial counts a partial end starting. Under s.mu.
func (s *Scope) beginPartial() { s.unitOf().partial++ }

// endPartial counts a partial end finished: saved says it committed a
// session, unknown that a commit's outcome is unknown (it may have saved),
// lost that it ended one with work to commit without saving it against
// the caller's wish (a failed hand commit, the net's rollback).
func (s *Scope) endPartial(saved, lost, unknown bool) {
	s.mu.Lock()
	u := s.unit
	u.handCommitted = u.handCommitted || saved
	u.lost = u.lost || lost
	u.unknown = u.unknown || unknown
	u.partial--
	idle := u.idle
	if u.partial == 0 {
		u.idle = nil
	} else {
		idle = nil
	}
	s.mu.Unlock()
	if idle != nil {
		close(idle)
	}
}

// awaitPartial waits until no partial end is in progress, then reports
// whether one committed a session, whether one lost work, and whether a
// commit's outcome is unknown. Called from a session's teardown it does
// not wait: the partial end it may be part of would wait for it.
func (s *Scope) awaitPartial() (saved, lost, unknown bool) {
	s.mu.Lock()
	u := s.unit
	if u == nil {
		s.mu.Unlock()
		return false, false, false
	}
	if u.partial == 0 {
		defer s.mu.Unlock()
		return u.handCommitted, u.lost, u.unknown
	}
	if u.idle == nil {
		u.idle = make(chan struct{})
	}
	idle := u.idle
	s.mu.Unlock()
	if !inTeardown() {
		<-idle
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return u.handCommitted, u.lost, u.unknown
}

// holdWork reports whether one of scopes, or a scope open inside one,
// holds a session with a commit of its own (a savepoint's part).
func holdWork(scopes []*Scope) bool {
	for _, c := range scopes {
		for l := c.sessions.Load(); l != nil; l = l.next {
			if l.n.owner.ends.committable(l.n) {
				return true
			}
		}
		c.mu.Lock()
		var inner []*Scope
		for g := c.children; g != nil; g = g.sibling {
			inner = append(inner, g)
		}
		c.mu.Unlock()
		if holdWork(inner) {
			return true
		}
	}
	return false
}

// holdsCommittable reports whether one of nodes has a commit of its own.
func holdsCommittable(nodes []*node) bool {
	for _, n := range nodes {
		if n.owner.ends.committable(n) {
			return true
		}
	}
	return false
}

// finishHooks finishes an end whose sessions ended with err, then runs
// the unit hooks its outcome calls for (hooks.go), if unit says it may
// have some.
func (s *Scope) finishHooks(unit, commit bool, err error, byHand bool) error {
	var list []unitHook
	var which int
	if unit {
		list, which = s.settleHooks(commit, err, byHand)
	}
	err = s.finish(err)
	if list != nil {
		runHooks(list, which)
	}
	return err
}

// finish completes an end: the scope leaves its parent and the count of
// live scopes, and enders waiting for it are released.
func (s *Scope) finish(err error) error {
	s.release()
	if s.state.Or(stFinished)&stWaited != 0 {
		s.mu.Lock()
		close(s.busy)
		s.mu.Unlock()
	}
	return err
}

// release takes an ended scope out of its parent and the count of live
// scopes.
func (s *Scope) release() {
	if s.parent != nil {
		s.parent.orphan(s)
	}
	liveScopes.Add(-1)
	if s.tracked {
		untrack(s)
	}
}

// awaitEnd waits until the teardown another caller started has finished,
// so that every ender returns with the scope fully torn down.
func (s *Scope) awaitEnd() {
	s.mu.Lock()
	if s.state.Load()&stWaited == 0 {
		s.busy = make(chan struct{})
	}
	w := s.busy
	finished := s.state.Or(stWaited)&stFinished != 0
	s.mu.Unlock()
	if !finished {
		<-w
	}
}

// endedByNet marks s, a child whose parent the safety net is ending, as
// ended by the net too: its errors say so, with the context's cause.
func (s *Scope) endedByNet() {
	s.mu.Lock()
	if !s.ended() {
		s.flags |= byNet
	}
	s.mu.Unlock()
}

// adopt links child into s's children, unless s has ended; then child,
// born ended, says why s ended.
func (s *Scope) adopt(child *Scope) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.touch() {
		child.flags |= s.flags & byNet // not shared yet
		return false
	}
	child.sibling = s.children
	s.children = child
	return true
}

// orphan unlinks child from s's children.
func (s *Scope) orphan(child *Scope) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := &s.children; *p != nil; p = &(*p).sibling {
		if *p == child {
			*p = child.sibling
			break
		}
	}
	child.sibling = nil
}

// scopePlace is the session of owner o in scope s, for lookup.
type scopePlace struct {
	s   *Scope
	o   *owner
	end int8 // what the lookup is for, below
}

const (
	endNone   int8 = iota // Current
	endRemove             // ScopedSession.Remove: an ended scope has nothing to remove
	endCommit             // ScopedSession.Commit: an ended scope committed nothing
)

func (p scopePlace) lock()                           { p.s.mu.Lock() }
func (p scopePlace) unlock()                         { p.s.mu.Unlock() }
func (p scopePlace) take(n *node)                    { p.s.take(n); p.s.beginPartial() }
func (p scopePlace) ended(saved, lost, unknown bool) { p.s.endPartial(saved, lost, unknown) }
func (p scopePlace) endContext() context.Context     { return p.s.teardownContext() }
func (p scopePlace) outer() context.Context          { return nil }

// before reports whether a hand commit of the unit saved, or may have: a
// child's hand commits released savepoints and saved nothing. Under s.mu.
func (p scopePlace) before() (saved, unknown bool) {
	if u := p.s.unit; u != nil && p.s.parent == nil {
		return u.handCommitted, u.unknown
	}
	return false, false
}

func (p scopePlace) get() *node {
	if n := p.s.find(p.o); n != nil {
		return n
	}
	for c := p.s.creating; c != nil; c = c.next {
		if c.n.owner == p.o {
			return c.n
		}
	}
	return nil
}

func (p scopePlace) check() error {
	ended := p.s.ended()
	switch {
	case p.end == endRemove || !ended && p.end == endNone:
		return nil
	case ended:
		// For Commit: whatever the session held was rolled back with its
		// scope, and nil would claim a commit that did not happen.
		return p.s.closedErr()
	case p.s.flags&netFired != 0 && !p.o.noNet:
		return errNetFired(p.s)
	}
	return nil
}

// The contexts of a scope: the one Begin returns, which carries the scope,
// and the one sessions are ended with, which keeps its values but is never
// cancelled. Both are the Scope itself under another type: no allocation.

// scopeKey finds the innermost Scope in a context.
type scopeKey struct{}

func scopeFrom(ctx context.Context) *Scope {
	if c, ok := ctx.(*scopeContext); ok { // the common case: no layers above Begin's context
		return (*Scope)(c)
	}
	return scopeValue(ctx)
}

// scopeValue is scopeFrom through the context's layers: apart, so that
// scopeFrom inlines into Current.
//
//go:noinline
func scopeValue(ctx context.Context) *Scope {
	s, _ := ctx.Value(scopeKey{}).(*Scope)
	return s
}

// scopeContext is the context Begin returns: the parent context plus the
// scope, without the allocation of a separate context.WithValue.
type scopeContext Scope

func (s *Scope) context() context.Context { return (*scopeContext)(s) }

func (c *scopeContext) Deadline() (time.Time, bool) { return c.parentCtx.Deadline() }
func (c *scopeContext) Done() <-chan struct{}       { return c.parentCtx.Done() }
func (c *scopeContext) Err() error                  { return c.parentCtx.Err() }
func (c *scopeContext) String() string              { return fmt.Sprint(c.parentCtx) + ".WithScope" }

func (c *scopeContext) Value(key any) any {
	if _, ok := key.(scopeKey); ok {
		return (*Scope)(c)
	}
	return c.parentCtx.Value(key)
}

// teardownContext is what sessions are ended with: the scope's values,
// never cancelled, so that a cancelled request still rolls back cleanly.
type teardownContext Scope

func (s *Scope) teardownContext() context.Context { return (*teardownContext)(s) }

func (c *teardownContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *teardownContext) Done() <-chan struct{}       { return nil }
func (c *teardownContext) Err() error                  { return nil }
func (c *teardownContext) Value(key any) any           { return (*scopeContext)(c).Value(key) }
func (c *teardownContext) String() string {
	return fmt.Sprint(c.parentCtx) + ".WithScope.WithoutCancel"
}
