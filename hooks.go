package scoped

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/go-scoped/scoped/internal/unithooks"
)

// Unit hooks: side effects tied to the outcome of a unit of work (spec
// §12). A scope holds its hooks in one list, in registration order; its
// end decides which of them run. A unit that registers none pays nothing
// for them: its end does not look.

// OnCommit registers fn to run once the unit of work of ctx's scope has
// been saved: after the outermost unit committed every session, for a
// hook registered in a child unit (a nested [Run] or [Begin]) whose
// savepoint was then released. Use it for work that must happen only if
// the unit's writes are saved: send the e-mail, publish the event, drop
// a cache entry. A hook registered in a child unit that rolls back is
// dropped.
//
// Hooks run after the sessions have ended, in registration order, on the
// goroutine that ended the scope (the one that called [Scope.Commit]) —
// or, under a middleware that runs them after its response and can only
// finish that response by returning (scopedhttp over HTTP/2, streaming or
// after a panic; scopedconnect's Handler), on a goroutine of their own once it has
// returned — with a context that has the values of ctx but neither its cancellation
// nor its scope: a session asked for there is [ErrNoScope], never the
// ended one. A hook that panics is logged with log/slog and stops no
// other hook; no hook changes the unit's result. When the outcome is not
// known ([ErrCommitUnknown]) or only part of the unit was saved
// ([ErrPartiallyCommitted], or a session committed by hand with
// [ScopedSession.Commit] in a unit whose removal then rolled back another
// transaction, or after a failed hand commit or the safety net's
// rollback), neither OnCommit nor [OnRollback] hooks run, and that is
// logged: running either would claim an outcome nobody knows. A unit
// removed after its transactions were committed by hand, each hand commit
// known to have succeeded, runs its OnCommit hooks; a transaction removed
// by hand is the caller's decision, not work lost.
//
// A hook is lost if the process dies between the commit and the hook.
// For work that must not be lost, write it in the unit's own transaction
// instead: scopedriver.Insert enqueues a River job that exists if and
// only if the unit committed.
//
// scopedhttp, scopedgrpc and scopedconnect run the hooks after the
// response has been sent; a [Run] with [WithRetry] drops the OnCommit
// hooks of a failed attempt. Outside a scope OnCommit returns
// [ErrNoScope]; in a scope that has ended, [ErrScopeClosed].
func OnCommit(ctx context.Context, fn func(ctx context.Context)) error {
	return addHook(ctx, fn, false)
}

// OnRollback registers fn to run when the work of ctx's unit is undone:
// when a child unit rolls back to its savepoint, when the outermost unit
// rolls back (or its commit fails) after the child was released, when
// its scope is removed, by the safety net too. Use it to compensate for
// what the unit did outside the database. It runs as [OnCommit] hooks do
// (after the sessions have ended, in registration order, with ctx's
// values only), on the goroutine that ended the scope: the safety net's,
// for a scope it ended. Outside a scope it returns [ErrNoScope].
func OnRollback(ctx context.Context, fn func(ctx context.Context)) error {
	return addHook(ctx, fn, true)
}

// unitHook is one registered hook and the context it was registered
// with, whose values its run keeps.
type unitHook struct {
	fn       func(context.Context)
	ctx      context.Context
	rollback bool
}

// unitState is what a unit of work holds beyond its sessions, made on
// first need: its hooks, and a request of a Run inside to run it again
// (run.go). Guarded by the scope's mu.
type unitState struct {
	hooks []unitHook
	buf   [2]unitHook // hooks' first array: most units register one or two
	kept  int         // the scope ended under hold (internal/unithooks): which of hooks its owner runs
	retry *retryRequest
	// A session of the unit was committed by hand (ScopedSession.Commit).
	// A unit removed afterwards with nothing left to commit saved its work
	// (OnCommit hooks run); one that rolled back more, or whose commit
	// failed, saved only part of it, so neither kind runs (OnRollback
	// would compensate saved work).
	handCommitted bool
	// Partial ends in progress (scope.go), and what their last one closes
	// for the scope's end waiting for them.
	partial int
	idle    chan struct{}
	lost    bool // a hand commit failed, or the net rolled back work to commit
	unknown bool // a hand commit's outcome is unknown (ErrCommitUnknown): it may have saved
}

// unitOf returns s's unit state, made on first need. Under s.mu.
func (s *Scope) unitOf() *unitState {
	if s.unit == nil {
		s.touch() // the end must read it
		u := &unitState{}
		u.hooks = u.buf[:0]
		s.unit = u
	}
	return s.unit
}

func addHook(ctx context.Context, fn func(context.Context), rollback bool) error {
	if fn == nil {
		panic("scoped: nil hook")
	}
	s := scopeFrom(ctx)
	if s == nil {
		return ErrNoScope
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.touch() {
		return ErrScopeClosed
	}
	u := s.unitOf()
	u.hooks = append(u.hooks, unitHook{fn: fn, ctx: ctx, rollback: rollback})
	return nil
}

// Hook outcomes of an end.
const (
	hooksNone     = iota // nothing to run: none registered, moved up, or outcome unknown
	hooksCommit          // run the OnCommit hooks
	hooksRollback        // run the OnRollback hooks
)

// settleHooks decides, once s's sessions have ended with err (commit
// says whether the end was asked to commit; byHand, that a removal rolled
// back nothing with work to commit), what becomes of its hooks:
// a released child hands them all to its parent; otherwise the ones of
// the outcome are returned to run, unless the owner holds them (see
// internal/unithooks), in which case they stay on s, decided.
func (s *Scope) settleHooks(commit bool, err error, byHand bool) (list []unitHook, which int) {
	s.mu.Lock()
	u := s.unit
	if u == nil || len(u.hooks) == 0 {
		s.mu.Unlock()
		return nil, hooksNone
	}
	list, u.hooks = u.hooks, nil
	held := s.flags&hookHeld != 0
	handCommitted, unknown := u.handCommitted, u.unknown
	s.mu.Unlock()

	switch {
	case !commit && handCommitted && byHand && !unknown:
		which = hooksCommit // all the unit saved was saved by hand; nothing was rolled back
	case !commit && (handCommitted || unknown):
		reportSkipped(s.parentCtx, list, errHandCommitted)
		return nil, hooksNone
	case !commit:
		which = hooksRollback
	case errors.Is(err, ErrPartiallyCommitted) || errors.Is(err, ErrCommitUnknown):
		reportSkipped(s.parentCtx, list, err)
		return nil, hooksNone
	case err == nil || savedAll(err):
		which = hooksCommit
	default:
		which = hooksRollback
	}
	if which == hooksCommit && s.parent != nil {
		// Released: the child's work is now its parent's, and so are its
		// hooks, of both kinds. The parent ends after its children have
		// finished, so it has not yet taken its own hooks.
		p := s.parent
		p.mu.Lock()
		pu := p.unitOf()
		pu.hooks = append(pu.hooks, list...)
		p.mu.Unlock()
		return nil, hooksNone
	}
	if held {
		s.mu.Lock()
		u.hooks, u.kept = list, which
		s.mu.Unlock()
		return nil, hooksNone
	}
	return list, which
}

// runHooks runs the hooks of one kind, in registration order.
func runHooks(list []unitHook, which int) {
	for _, h := range list {
		if h.rollback == (which == hooksRollback) {
			runHook(h)
		}
	}
}

// runHook runs one hook with the values of its registration's context,
// without its cancellation and without its scope (Current there is
// ErrNoScope rather than the ended session); a panic is logged and stops
// nothing.
func runHook(h unitHook) {
	ctx := context.WithValue(context.WithoutCancel(h.ctx), scopeKey{}, (*Scope)(nil))
	defer func() {
		if p := recover(); p != nil {
			kind := "OnCommit"
			if h.rollback {
				kind = "OnRollback"
			}
			slog.Default().ErrorContext(ctx, "scoped: unit hook panicked", "hook", kind, "panic", fmt.Sprint(p))
		}
	}()
	h.fn(ctx)
}

// errHandCommitted is why the hooks of a unit removed after one of its
// sessions was committed by hand do not run.
var errHandCommitted = errors.New("scoped: a session of the unit was committed by hand (ScopedSession.Commit) and the unit was then removed, not committed: part of its work is saved; commit the scope (Scope.Commit, or a middleware's automatic mode) for its OnCommit hooks to run")

// reportSkipped logs the hooks not run because the unit's outcome is
// unknown or partial.
func reportSkipped(ctx context.Context, list []unitHook, err error) {
	slog.Default().ErrorContext(ctx, "scoped: unit hooks not run: whether the unit's work was saved is not known, or only part of it was",
		"hooks", len(list), "error", err)
}

// runHeld runs the hooks s's end kept under hold, once.
func (s *Scope) runHeld() {
	s.mu.Lock()
	u := s.unit
	if u == nil || u.kept == hooksNone {
		s.mu.Unlock()
		return
	}
	list, which := u.hooks, u.kept
	u.hooks, u.kept = nil, hooksNone
	s.mu.Unlock()
	runHooks(list, which)
}

// The owners of a unit of work (internal/unithooks) ask what hand commits
// did before they end the scope, while one the handler started on another
// goroutine may still run: awaitPartial waits for it, since "not yet"
// would let a retrying owner save that part once per run.
func init() {
	unithooks.Hold = func(x any) {
		s := x.(*Scope)
		s.mu.Lock()
		s.flags |= hookHeld
		s.mu.Unlock()
	}
	unithooks.Run = func(s any) { s.(*Scope).runHeld() }
	unithooks.Pending = func(x any) bool {
		s := x.(*Scope)
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.unit != nil && s.unit.kept != hooksNone
	}
	unithooks.SavedByHand = func(s any) bool { saved, _, unknown := s.(*Scope).awaitPartial(); return saved || unknown }
	unithooks.UnknownByHand = func(s any) bool { saved, _, unknown := s.(*Scope).awaitPartial(); return unknown && !saved }
	unithooks.UncertainByHand = func(s any) bool { _, _, unknown := s.(*Scope).awaitPartial(); return unknown }
	unithooks.LostByHand = func(s any) bool { _, lost, _ := s.(*Scope).awaitPartial(); return lost }
}
