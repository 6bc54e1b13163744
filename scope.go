package scoped

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
	// Fields are ordered so that a Scope fits the 128-byte size class.

	parentCtx context.Context // the context Begin was given
	parent    *Scope

	// head lists this scope's sessions, newest first. Readers walk it
	// without a lock; it is written only under mu.
	head  atomic.Pointer[node]
	ended atomic.Bool // set under mu, once

	// finished is set when teardown is complete. A second ender that must
	// wait for the first makes waitEnd (under mu), which the first closes.
	finished atomic.Bool
	waitEnd  atomic.Pointer[chan struct{}]

	mu       sync.Mutex    // guards the fields below and writes to head and ended
	stripe   uint8         // counter stripe, see stats.go; set once, before the scope is shared
	noNet    bool          // no safety net: BeginWithoutSafetyNet
	armed    bool          // the safety net is registered, or being registered
	netHeld  bool          // a session the net may end was created: armed for it, not only for a begin
	netFired bool          // the safety net ended the sessions it may end; the scope is still open
	byNet    bool          // the safety net ended the whole scope
	tracked  bool          // recorded by a leak tracker (leak.go); set before the scope is shared
	hookHeld bool          // the owner runs the hooks after answering (hooks.go)
	netBusy  chan struct{} // closed when a safety net ending part of the scope has finished
	seq      uint64        // sessions created so far: the creation order of nodes
	stop     func() bool   // unregisters the safety net
	children *Scope        // open child scopes, newest first

	// prevSib and nextSib link this scope into parent.children; guarded by parent.mu.
	prevSib, nextSib *Scope

	retry atomic.Pointer[retryRequest] // a Run inside asked to run this unit again (run.go)
	hooks *unitHooks                   // OnCommit and OnRollback hooks (hooks.go); guarded by mu
}

func newScope(ctx context.Context, parent *Scope) *Scope {
	s := &Scope{parentCtx: ctx, parent: parent, stripe: uint8(newStripe() % stripes)}
	if parent != nil && !parent.adopt(s) {
		s.ended.Store(true)
		s.finished.Store(true)
		return s
	}
	liveScopes.add(uint32(s.stripe), 1)
	s.tracked = track(s, "scope")
	return s
}

// adopt links child into s's children, unless s has ended.
func (s *Scope) adopt(child *Scope) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended.Load() {
		return false
	}
	child.nextSib = s.children
	if s.children != nil {
		s.children.prevSib = child
	}
	s.children = child
	return true
}

// orphan unlinks child from s's children.
func (s *Scope) orphan(child *Scope) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if child.prevSib != nil {
		child.prevSib.nextSib = child.nextSib
	} else if s.children == child {
		s.children = child.nextSib
	}
	if child.nextSib != nil {
		child.nextSib.prevSib = child.prevSib
	}
	child.prevSib, child.nextSib = nil, nil
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
// [ErrScopeClosed]). For sessions of its own inside a scope use
// [BeginIndependent]; for work that outlives the scope, [Detach].
//
// Begin itself takes no connection and runs no factory.
func Begin(ctx context.Context) (context.Context, *Scope) {
	if ctx == nil {
		panic("scoped: Begin with nil context")
	}
	s := newScope(ctx, scopeFrom(ctx))
	return s.context(), s
}

// BeginIndependent starts a new root scope even inside a scope: an
// independent unit of work with sessions of its own (its own transaction,
// on its own connection), which ctx's scope neither joins nor ends. It
// keeps ctx's values and cancellation. Use it for work that must survive
// the enclosing unit's rollback, such as an audit row, and end it yourself.
func BeginIndependent(ctx context.Context) (context.Context, *Scope) {
	if ctx == nil {
		panic("scoped: BeginIndependent with nil context")
	}
	s := newScope(ctx, nil)
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
	s := newScope(ctx, scopeFrom(ctx))
	s.noNet = true
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
	s := newScope(context.WithoutCancel(ctx), nil)
	return s.context(), s
}

// FromContext returns the innermost scope in ctx, if any.
func FromContext(ctx context.Context) (*Scope, bool) {
	s := scopeFrom(ctx)
	return s, s != nil
}

// Remove ends the scope: open child scopes first, then every session the
// scope created, newest first, each rolled back and closed exactly once.
// A failing teardown does not stop the others; their errors are joined.
// Nothing stays registered, and a later Current in the scope returns
// [ErrScopeClosed]. Remove is idempotent and safe to call concurrently;
// a second caller returns nil once the first has finished.
func (s *Scope) Remove() error { return s.end(false) }

// Commit commits every committable session of the scope in creation
// order, then ends the scope as [Scope.Remove] does. The first failing
// commit stops further commits, and the sessions not yet committed are
// rolled back; the error names the session that failed. (A close that
// fails after a successful commit is reported but stops nothing: that
// session's changes are committed.) Open child scopes
// are removed (rolled back), not committed: their owner never decided.
// Commit on a scope that has already ended commits nothing and returns
// [ErrScopeClosed].
func (s *Scope) Commit() error { return s.end(true) }

// Len returns the number of sessions the scope holds now.
func (s *Scope) Len() int {
	n := 0
	for e := s.head.Load(); e != nil; e = e.next.Load() {
		if e.state.Load() == stateReady {
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
	if !s.ended.Load() {
		return nil
	}
	s.mu.Lock()
	byNet := s.byNet
	s.mu.Unlock()
	if byNet {
		return errNetFired(s)
	}
	return ErrScopeClosed
}

func (s *Scope) end(commit bool) error {
	s.mu.Lock()
	if s.ended.Load() {
		s.mu.Unlock()
		if !s.finished.Load() && insideTeardown() {
			return errOwnTeardown
		}
		s.awaitEnd()
		if commit {
			// Whatever the scope held was ended before: nothing is
			// committed by this call, and saying nil would claim otherwise.
			return ErrScopeClosed
		}
		return nil
	}
	s.ended.Store(true)
	// A begin still running is given up: its session would be ended the
	// moment it exists (creationbound.go).
	var fb [2]*factoryContext
	fired := s.fireBounds(fb[:0], context.Canceled, ErrScopeClosed)
	netFired, netBusy := s.netFired, s.netBusy
	stop := s.stop
	s.stop = nil
	var kids [4]*Scope
	children := kids[:0]
	for c := s.children; c != nil; {
		next := c.nextSib
		c.prevSib, c.nextSib = nil, nil
		children = append(children, c)
		c = next
	}
	s.children = nil
	// Only sessions whose creation finished are ours to end; a creation
	// still in flight sees ended when it finishes and ends its own session.
	var buf [8]*node
	nodes := buf[:0]
	head := s.head.Load()
	if head != nil { // a scope that never held a session skips the barriered store
		s.head.Store(nil)
	}
	for n := head; n != nil; n = n.next.Load() {
		if n.state.Load() == stateReady {
			nodes = append(nodes, n)
		}
	}
	s.mu.Unlock()
	if s.parent == nil {
		s.warnRetryUnread()
	}
	runBounds(fired)
	sortNewestFirst(nodes)

	if stop != nil {
		stop()
	}
	var errs []error
	for _, c := range children {
		if err := c.end(false); err != nil {
			errs = append(errs, err)
		}
	}
	if commit && netFired {
		// The net rolled back part of the scope: committing the rest
		// would save half of the work.
		errs = append(errs, errNetFired(s))
		err := endNodes(s.teardownContext(), nodes, false, errs)
		return s.finishHooks(true, fmt.Errorf("%w: %w", ErrNotCommitted, err), netBusy)
	}
	return s.finishHooks(commit, endNodes(s.teardownContext(), nodes, commit, errs), netBusy)
}

// finishHooks finishes an end whose sessions ended with err, then runs
// the unit hooks its outcome calls for (hooks.go).
func (s *Scope) finishHooks(commit bool, err error, netBusy chan struct{}) error {
	list, which := s.settleHooks(commit, err)
	err = s.finish(err, netBusy)
	if list != nil {
		runHooks(list, which)
	}
	return err
}

// finish completes an end: the scope leaves its parent and the count of
// live scopes, and enders waiting for it are released.
func (s *Scope) finish(err error, netBusy chan struct{}) error {
	if netBusy != nil && !insideNet() {
		// Return with everything ended, including what the net is ending
		// (unless this is a teardown the net runs, ending its own scope).
		<-netBusy
	}

	if s.parent != nil {
		s.parent.orphan(s)
	}
	liveScopes.add(uint32(s.stripe), -1)
	if s.tracked {
		untrack(s)
	}
	s.finished.Store(true)
	if w := s.waitEnd.Load(); w != nil {
		close(*w)
	}
	return err
}

// awaitEnd waits until the teardown another caller started has finished,
// so that every ender returns with the scope fully torn down.
func (s *Scope) awaitEnd() {
	if s.finished.Load() {
		return
	}
	s.mu.Lock()
	w := s.waitEnd.Load()
	if w == nil {
		ch := make(chan struct{})
		w = &ch
		s.waitEnd.Store(w)
	}
	s.mu.Unlock()
	// The finisher stores finished before loading waitEnd: if it missed
	// our channel, we see finished here and do not wait.
	if s.finished.Load() {
		return
	}
	<-*w
}

// endNodes ends sessions listed newest first. With commit, committable
// sessions are committed in creation order until a commit fails;
// everything not committed is then rolled back and closed, newest first.
// The joined error says what the failure means for the work (classify).
func endNodes(ctx context.Context, nodes []*node, commit bool, errs []error) error {
	commitFailed, committed := false, false
	if commit {
		for i := len(nodes) - 1; i >= 0; i-- {
			n := nodes[i]
			if !n.self.committable() {
				continue
			}
			n.ended = true
			err := n.self.end(ctx, true)
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
		if err := n.self.end(ctx, false); err != nil {
			errs = append(errs, err)
		}
	}
	return classify(errors.Join(errs...), commit, commitFailed, committed)
}

// sortNewestFirst orders a scope's nodes by creation, newest first. Scopes
// hold a handful of sessions: insertion sort, no allocation.
func sortNewestFirst(nodes []*node) {
	for i := 1; i < len(nodes); i++ {
		for j := i; j > 0 && nodes[j].seq > nodes[j-1].seq; j-- {
			nodes[j], nodes[j-1] = nodes[j-1], nodes[j]
		}
	}
}
