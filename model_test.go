package scoped_test

// A model-based test of the core: random programs of operations are run
// by several goroutines against the library and, sequentially, against a
// small reference model (mModel below) that says what every operation must
// return, which teardown events it must cause and in which order, and what
// every scope and session must look like afterwards.
//
// Each goroutine (a "worker") owns its scopes and its keys of the keyed
// ScopedSession, so that what it observes does not depend on how the
// workers interleave; the ScopedSessions themselves are shared, so their
// counters, hooks and stores see every worker at once. Operations that
// involve other goroutines are included where the outcome is still
// determined: several goroutines asking for the same session at once,
// several ending the same scope at once, a scope ended on another goroutine
// while its factory runs, and Remove racing the cancellation safety net.
//
// The safety net ends scopes on a goroutine of its own. The model knows
// which scopes it must end; the runner waits (bounded) until each of them
// reports ended, then calls Remove on it, which returns only once the
// teardown has finished and is otherwise a no-op: after that, everything
// the worker observes is determined again.
//
// Reproduce: SCOPED_MODEL_SEED=<seed> (or -model.seed), optionally
// SCOPED_MODEL_ONLY=<program> (or -model.only); SCOPED_MODEL_LONG=1 (or
// -model.long) runs many more and longer programs with a random seed.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
)

var (
	modelSeedFlag     = flag.String("model.seed", "", "seed of the model-based test's programs (also SCOPED_MODEL_SEED)")
	modelProgramsFlag = flag.Int("model.programs", 0, "number of programs the model-based test runs (also SCOPED_MODEL_PROGRAMS)")
	modelOnlyFlag     = flag.Int("model.only", -1, "run only this program of the seed (also SCOPED_MODEL_ONLY)")
	modelLongFlag     = flag.Bool("model.long", false, "long model-based run (also SCOPED_MODEL_LONG=1)")
)

// modelBound is how long the runner waits for something that must happen
// (a safety net, a helper goroutine) before it reports it as a failure. It
// is never a timing assertion.
const modelBound = 10 * time.Second

// modelDefaultSeed makes the brief run deterministic: the same programs on
// every CI run. The long run picks a random seed and prints it.
const modelDefaultSeed = 20251122

type modelConfig struct {
	seed       uint64
	programs   int
	only       int
	maxWorkers int
	maxOps     int
	budget     time.Duration // stop starting programs after this long
	long       bool
}

func modelSettings(t *testing.T) modelConfig {
	t.Helper()
	long := *modelLongFlag || os.Getenv("SCOPED_MODEL_LONG") != ""
	c := modelConfig{seed: modelDefaultSeed, programs: 500, only: -1, maxWorkers: 4, maxOps: 40, budget: 2 * time.Minute}
	if long {
		c = modelConfig{seed: rand.Uint64(), programs: 1_000_000, only: -1, maxWorkers: 8, maxOps: 120, budget: 5 * time.Minute, long: true}
		if d, err := time.ParseDuration(os.Getenv("SCOPED_MODEL_DURATION")); err == nil && d > 0 {
			c.budget = d
		}
	}
	seed := *modelSeedFlag
	if seed == "" {
		seed = os.Getenv("SCOPED_MODEL_SEED")
	}
	if seed != "" {
		v, err := strconv.ParseUint(seed, 10, 64)
		if err != nil {
			t.Fatalf("model seed %q: %v", seed, err)
		}
		c.seed = v
	}
	if n := *modelProgramsFlag; n > 0 {
		c.programs = n
	} else if n, err := strconv.Atoi(os.Getenv("SCOPED_MODEL_PROGRAMS")); err == nil && n > 0 {
		c.programs = n
	}
	if *modelOnlyFlag >= 0 {
		c.only = *modelOnlyFlag
	} else if n, err := strconv.Atoi(os.Getenv("SCOPED_MODEL_ONLY")); err == nil && n >= 0 {
		c.only = n
	}
	return c
}

// ---------------------------------------------------------------------------
// Programs

// The ScopedSessions of every program, all of session type *mSession.
var modelRegs = [...]struct {
	name          string
	commit, close bool // has a commit, has a close (every one has a rollback)
	keyed         bool // custom ScopeFunc: keyed on a context value
	noNet         bool // WithoutSafetyNet: its session disarms the scope's safety net
}{
	{name: "A", commit: true, close: true},
	{name: "B", commit: true}, // nothing to close
	{name: "C", close: true},  // not committable: Commit rolls it back
	{name: "N", commit: true, close: true, noNet: true},
	{name: "K", commit: true, close: true, keyed: true}, // last: the others are held by scopes
}

const mRegCount = len(modelRegs)

type mOpKind uint8

const (
	mBegin             mOpKind = iota // root scope; variant 0: cancellable ctx, 1: background ctx, 2: cancellable ctx without safety net
	mBeginChild                       // child of scope s; variant 1: without safety net
	mDetach                           // scoped.Detach(ctx of scope s)
	mCurrent                          // Current(reg) in scope s (keyed: with key); variant 1: through Bind and scoped.Current
	mHas                              // Has(reg)
	mSessRemove                       // ScopedSession.Remove(reg)
	mSessCommit                       // ScopedSession.Commit(reg)
	mRemove                           // Scope.Remove
	mCommit                           // Scope.Commit
	mCancel                           // cancel the context scope s was begun from (its root's)
	mNoScope                          // reg on a context without scope; variant 0 Current (keyed: with key), 1 Has, 2 Remove, 3 Current without key
	mConcCurrent                      // n goroutines call Current(reg) in scope s at once
	mConcEnd                          // n goroutines call Remove (or Commit) on scope s at once
	mEndDuringCreate                  // scope s ends on another goroutine while the factory of reg runs
	mRemoveRacesCancel                // Remove of scope s races the cancellation of its context
	mKinds
)

// mPlan is what the session created by an operation will do.
type mPlan struct {
	factoryErr, factoryPanic         bool
	commitErr, rollbackErr, closeErr bool
}

func (p mPlan) String() string {
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{{p.factoryErr, "factoryErr"}, {p.factoryPanic, "factoryPanic"}, {p.commitErr, "commitErr"}, {p.rollbackErr, "rollbackErr"}, {p.closeErr, "closeErr"}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	return "{" + strings.Join(f, ",") + "}"
}

type mOp struct {
	kind    mOpKind
	variant uint8
	reg     uint8
	s       int // scope: index into the worker's scopes (programs are normalized)
	key     uint8
	n       uint8
	commit  bool
	plan    mPlan
}

func (o mOp) String() string {
	reg := modelRegs[int(o.reg)%mRegCount].name
	if modelRegs[int(o.reg)%mRegCount].keyed {
		reg += "/key" + strconv.Itoa(int(o.key))
	}
	end := "Remove"
	if o.commit {
		end = "Commit"
	}
	switch o.kind {
	case mBegin:
		return "Begin(" + [...]string{"cancellable ctx", "background ctx", "cancellable ctx, BeginWithoutSafetyNet"}[o.variant%3] + ")"
	case mBeginChild:
		if o.variant == 1 {
			return fmt.Sprintf("BeginWithoutSafetyNet(child of scope %d)", o.s)
		}
		return fmt.Sprintf("Begin(child of scope %d)", o.s)
	case mDetach:
		return fmt.Sprintf("Detach(scope %d)", o.s)
	case mCurrent:
		via := ""
		if o.variant == 1 {
			via = ", via Bind+scoped.Current"
		}
		return fmt.Sprintf("Current(%s, scope %d%s) plan %v", reg, o.s, via, o.plan)
	case mHas:
		return fmt.Sprintf("Has(%s, scope %d)", reg, o.s)
	case mSessRemove:
		return fmt.Sprintf("ScopedSession.Remove(%s, scope %d)", reg, o.s)
	case mSessCommit:
		return fmt.Sprintf("ScopedSession.Commit(%s, scope %d)", reg, o.s)
	case mRemove:
		return fmt.Sprintf("Scope.Remove(scope %d)", o.s)
	case mCommit:
		return fmt.Sprintf("Scope.Commit(scope %d)", o.s)
	case mCancel:
		return fmt.Sprintf("cancel(context of scope %d)", o.s)
	case mNoScope:
		return fmt.Sprintf("%s(%s) without scope", [...]string{"Current", "Has", "Remove", "Current without key"}[o.variant%4], reg)
	case mConcCurrent:
		return fmt.Sprintf("%d goroutines: Current(%s, scope %d) plan %v", o.n, reg, o.s, o.plan)
	case mConcEnd:
		return fmt.Sprintf("%d goroutines: Scope.%s(scope %d)", o.n, end, o.s)
	case mEndDuringCreate:
		return fmt.Sprintf("Current(%s, scope %d) plan %v while another goroutine runs Scope.%s", reg, o.s, o.plan, end)
	case mRemoveRacesCancel:
		return fmt.Sprintf("Scope.Remove(scope %d) racing cancel(its context)", o.s)
	}
	return fmt.Sprintf("op(%d)", o.kind)
}

// createsScope reports whether op adds a scope to its worker's list.
func (o mOp) createsScope() bool {
	return o.kind == mBegin || o.kind == mBeginChild || o.kind == mDetach
}

// usesScope reports whether op refers to one of the worker's scopes.
func (o mOp) usesScope() bool { return o.kind != mBegin && o.kind != mNoScope }

// mProgram is one list of operations per worker.
type mProgram [][]mOp

// normalize makes every scope reference valid (modulo the scopes that exist
// at that point) and drops operations that refer to a scope before any
// exists, so that deleting operations while shrinking keeps a valid program.
func (p mProgram) normalize() mProgram {
	out := make(mProgram, 0, len(p))
	for _, ops := range p {
		var keep []mOp
		n := 0
		for _, op := range ops {
			if op.usesScope() {
				if n == 0 {
					continue
				}
				op.s %= n
			}
			if op.createsScope() {
				n++
			}
			keep = append(keep, op)
		}
		if len(keep) > 0 {
			out = append(out, keep)
		}
	}
	return out
}

func (p mProgram) size() int {
	n := 0
	for _, ops := range p {
		n += len(ops)
	}
	return n
}

func (p mProgram) String() string {
	var b strings.Builder
	for w, ops := range p {
		fmt.Fprintf(&b, "  worker %d:\n", w)
		scope := 0
		for i, op := range ops {
			note := ""
			if op.createsScope() {
				note = fmt.Sprintf("   -> scope %d", scope)
				scope++
			}
			fmt.Fprintf(&b, "    %2d: %v%s\n", i, op, note)
		}
	}
	return b.String()
}

func modelGenerate(rng *rand.Rand, workers, opsPerWorker int) mProgram {
	weights := [mKinds]int{
		mBegin: 8, mBeginChild: 7, mDetach: 2, mCurrent: 26, mHas: 5, mSessRemove: 5, mSessCommit: 3,
		mRemove: 5, mCommit: 6, mCancel: 5, mNoScope: 3, mConcCurrent: 4, mConcEnd: 3,
		mEndDuringCreate: 3, mRemoveRacesCancel: 3,
	}
	total := 0
	for _, w := range weights {
		total += w
	}
	plan := func(factoryFaults bool) mPlan {
		var p mPlan
		if factoryFaults {
			p.factoryErr = rng.IntN(12) == 0
			p.factoryPanic = !p.factoryErr && rng.IntN(16) == 0
		}
		p.commitErr = rng.IntN(6) == 0
		p.rollbackErr = rng.IntN(8) == 0
		p.closeErr = rng.IntN(8) == 0
		return p
	}
	p := make(mProgram, workers)
	for w := range p {
		ops := []mOp{{kind: mBegin, variant: uint8(rng.IntN(3))}}
		n := 1
		for len(ops) < opsPerWorker {
			k := 0
			for x := rng.IntN(total); x >= weights[k]; k++ {
				x -= weights[k]
			}
			op := mOp{
				kind:    mOpKind(k),
				variant: uint8(rng.IntN(4)),
				reg:     uint8(rng.IntN(mRegCount)),
				key:     uint8(rng.IntN(3)),
				n:       uint8(2 + rng.IntN(5)),
				commit:  rng.IntN(2) == 0,
			}
			// Mostly one of the newest scopes, sometimes any.
			if rng.IntN(5) == 0 {
				op.s = rng.IntN(n)
			} else {
				op.s = n - 1 - rng.IntN(min(n, 3))
			}
			switch op.kind {
			case mBegin:
				op.variant %= 3
			case mBeginChild, mCurrent:
				op.variant %= 2
			case mConcCurrent:
				op.plan = plan(false) // a failing factory would be retried by late callers
			case mEndDuringCreate:
				op.reg %= uint8(mRegCount - 1) // scope-held sessions only
			}
			if op.kind == mCurrent || op.kind == mNoScope || op.kind == mEndDuringCreate {
				op.plan = plan(true)
			}
			ops = append(ops, op)
			if op.createsScope() {
				n++
			}
		}
		p[w] = ops
	}
	return p.normalize()
}

// ---------------------------------------------------------------------------
// The reference model: sequential, one worker after the other.

type mSessM struct {
	id                         string
	reg                        int
	plan                       mPlan
	commits, rollbacks, closes int
	shared                     bool // a child scope's share of an ancestor's session (id is that session's)
}

type mScopeM struct {
	parent   *mScopeM
	children []*mScopeM // open children, oldest first
	root     *mRootM    // the cancellable context it descends from; nil: never cancelled
	noNet    bool
	armed    bool // the safety net is registered (on the first session it may end)
	netFired bool // the net ended the sessions it may end; WithoutSafetyNet ones keep the scope open
	ended    bool
	sess     []*mSessM // ready sessions, oldest first
}

type mRootM struct{ cancelled bool }

type mWorkerM struct {
	id     int
	scopes []*mScopeM
	keyed  map[uint8]*mSessM
	korder []*mSessM // keyed sessions, oldest first

	// Filled by the operation being modelled.
	ev    []string
	async bool  // some teardown ran on a safety-net goroutine: events unordered
	wait  []int // scopes the safety net ends during the operation
}

type mModel struct {
	stats    [mRegCount]scoped.Stats
	hook     [mRegCount][]string
	sessions map[string]*mSessM
	// raced is what a child's Current may also return when the safety net
	// it armed in an ancestor ends the child on its own goroutine: the
	// share it got before the net reached it.
	raced string
}

// mExpect is what one operation must produce.
type mExpect struct {
	want      string
	match     func(got string) bool // nil: got must equal want
	events    []string
	unordered bool
	scopes    string
	wait      []int
}

// mExpected is what a whole program must produce.
type mExpected struct {
	ops      [][]mExpect // per worker; the last one is the final removal of every scope
	closeRes [mRegCount]string
	closeEv  [][]string // per worker
	stats    [mRegCount]scoped.Stats
	hook     [mRegCount][]string // sorted
	sessions map[string]string
}

const (
	mClosed   = "err[ErrScopeClosed]"
	mNetFired = "err[ErrScopeCancelled,ErrScopeClosed,context.Canceled]" // Current or Commit after a partial safety net
	mNoScopeE = "err[ErrNoScope]"
)

func modelSessID(w, op, reg int) string {
	return fmt.Sprintf("w%d.op%d.%s", w, op, modelRegs[reg].name)
}

func mErrString(leaves []string) string {
	if len(leaves) == 0 {
		return "nil"
	}
	s := slices.Clone(leaves)
	sort.Strings(s)
	return "err[" + strings.Join(s, ",") + "]"
}

func modelRun(p mProgram) *mExpected {
	m := &mModel{sessions: map[string]*mSessM{}}
	x := &mExpected{ops: make([][]mExpect, len(p)), closeEv: make([][]string, len(p)), sessions: map[string]string{}}
	workers := make([]*mWorkerM, len(p))
	for w, ops := range p {
		mw := &mWorkerM{id: w, keyed: map[uint8]*mSessM{}}
		workers[w] = mw
		for i, op := range ops {
			x.ops[w] = append(x.ops[w], m.step(mw, func(e *mExpect) string { return m.apply(mw, i, op, e) }))
		}
		x.ops[w] = append(x.ops[w], m.step(mw, func(*mExpect) string { return m.removeAll(mw) }))
	}
	// Close every ScopedSession: the keyed one ends what is left, newest first.
	var closeErrs [mRegCount][]string
	for _, mw := range workers {
		mw.ev = nil
		for i := len(mw.korder) - 1; i >= 0; i-- {
			s := mw.korder[i]
			closeErrs[s.reg] = append(closeErrs[s.reg], m.endSession(mw, s, false)...)
		}
		x.closeEv[mw.id] = mw.ev
	}
	for r := range x.closeRes {
		x.closeRes[r] = mErrString(closeErrs[r])
		x.hook[r] = slices.Sorted(slices.Values(m.hook[r]))
	}
	x.stats = m.stats
	for id, s := range m.sessions {
		x.sessions[id] = fmt.Sprintf("commits=%d rollbacks=%d closes=%d", s.commits, s.rollbacks, s.closes)
	}
	return x
}

func (m *mModel) step(w *mWorkerM, f func(*mExpect) string) mExpect {
	w.ev, w.async, w.wait = nil, false, nil
	var e mExpect
	e.want = f(&e)
	e.events, e.unordered, e.wait = w.ev, w.async, w.wait
	e.scopes = w.states()
	return e
}

func (w *mWorkerM) states() string {
	st := make([]string, len(w.scopes))
	for i, s := range w.scopes {
		if s.ended {
			st[i] = "E"
		} else {
			st[i] = "O" + strconv.Itoa(len(s.sess))
		}
	}
	return strings.Join(st, " ")
}

func (w *mWorkerM) add(s *mScopeM) string {
	w.scopes = append(w.scopes, s)
	return fmt.Sprintf("scope %d", len(w.scopes)-1)
}

func (w *mWorkerM) index(s *mScopeM) int { return slices.Index(w.scopes, s) }

func (s *mScopeM) find(reg int) *mSessM {
	for _, x := range s.sess {
		if x.reg == reg {
			return x
		}
	}
	return nil
}

func (m *mModel) apply(w *mWorkerM, i int, op mOp, e *mExpect) string {
	var s *mScopeM
	if op.usesScope() {
		s = w.scopes[op.s]
	}
	reg := int(op.reg) % mRegCount
	keyed := modelRegs[reg].keyed
	switch op.kind {
	case mBegin:
		ns := &mScopeM{noNet: op.variant == 2}
		if op.variant != 1 {
			ns.root = &mRootM{}
		}
		return w.add(ns)
	case mBeginChild:
		ns := &mScopeM{root: s.root, noNet: op.variant == 1}
		if s.ended {
			ns.ended = true // born ended
		} else {
			ns.parent = s
			s.children = append(s.children, ns)
		}
		return w.add(ns)
	case mDetach:
		return w.add(&mScopeM{})
	case mCurrent:
		m.raced = ""
		res := m.current(w, i, reg, op.key, op.plan, s)
		if alt := m.raced; alt != "" {
			e.match = func(got string) bool { return got == res || got == alt }
			return res + " (or " + alt + ", before the safety net)"
		}
		return res
	case mHas:
		if keyed {
			return strconv.FormatBool(w.keyed[op.key] != nil)
		}
		return strconv.FormatBool(!s.ended && s.find(reg) != nil)
	case mSessRemove, mSessCommit:
		return m.endOne(w, reg, op.key, s, op.kind == mSessCommit)
	case mRemove, mCommit:
		if s.ended {
			return mLateEnd(op.kind == mCommit)
		}
		return mErrString(m.endScope(w, s, op.kind == mCommit))
	case mCancel:
		if s.root == nil {
			return "noop"
		}
		m.cancel(w, s.root)
		return "cancel"
	case mNoScope:
		switch {
		case !keyed && op.variant == 1:
			return "false"
		case !keyed, op.variant == 3:
			return mNoScopeE
		case op.variant == 0:
			return m.current(w, i, reg, op.key, op.plan, nil)
		case op.variant == 1:
			return strconv.FormatBool(w.keyed[op.key] != nil)
		default:
			return m.endOne(w, reg, op.key, nil, false)
		}
	case mConcCurrent:
		m.raced = ""
		res := m.current(w, i, reg, op.key, op.plan, s)
		n := int(op.n)
		all := strings.Repeat(res+"|", n-1) + res
		if w.async {
			// The session's own creation armed the safety net of a scope
			// whose context is already cancelled: callers that come after
			// the net ended the scope get ErrScopeClosed, and after a net
			// that ended only part of it, that and the context's cause.
			late := mClosed
			if s.netFired {
				late = mNetFired
			}
			raced := m.raced
			e.match = func(got string) bool {
				parts := strings.Split(got, "|")
				ok := func(p string) bool { return p == res || p == late || raced != "" && p == raced }
				return len(parts) == n && (slices.Contains(parts, res) || raced != "") && !slices.ContainsFunc(parts, func(p string) bool { return !ok(p) })
			}
			return all + " (those after the safety net: " + late + ")"
		}
		return all
	case mConcEnd:
		// One caller ends the scope; the others wait until it has finished
		// and get nil from Remove, ErrScopeClosed from Commit (they
		// committed nothing).
		late := mLateEnd(op.commit)
		res := late
		if !s.ended {
			res = mErrString(m.endScope(w, s, op.commit))
		}
		out := append([]string{res}, slices.Repeat([]string{late}, int(op.n)-1)...)
		sort.Strings(out)
		return strings.Join(out, "|")
	case mEndDuringCreate:
		end := func() string {
			if s.ended {
				return mLateEnd(op.commit)
			}
			return mErrString(m.endScope(w, s, op.commit))
		}
		if s.ended {
			return "current=" + mClosed + " end=" + end()
		}
		if x := s.find(reg); x != nil {
			return "current=sess " + x.id + " end=" + end()
		}
		if s.netFired && !modelRegs[reg].noNet {
			return "current=" + mNetFired + " end=" + end()
		}
		if s.parent != nil {
			if !m.factoryRuns(s.parent, reg) {
				cur := m.current(w, i, reg, op.key, op.plan, s)
				return "current=" + cur + " end=" + end()
			}
			// The factory runs for the outermost scope while this child
			// ends: the session stays with its owner, the child gets none.
			endRes := end()
			cur := m.current(w, i, reg, op.key, op.plan, s.parent)
			if strings.HasPrefix(cur, "sess ") {
				cur = mClosed
			}
			return "current=" + cur + " end=" + endRes
		}
		id := modelSessID(w.id, i, reg)
		w.ev = append(w.ev, "create "+id)
		endRes := end()
		var cur string
		switch {
		case op.plan.factoryPanic:
			m.stats[reg].Failed++
			cur = "panic factory-panic:" + id
		case op.plan.factoryErr:
			m.stats[reg].Failed++
			cur = mErrString([]string{"factory:" + id})
		default:
			// The scope ended while the factory ran: the new session is
			// ended at once and Current says the scope is closed.
			x := m.newSession(id, reg, op.plan)
			cur = mErrString(append([]string{"ErrScopeClosed"}, m.endSession(w, x, false)...))
		}
		return "current=" + cur + " end=" + endRes
	case mRemoveRacesCancel:
		if s.root == nil || s.root.cancelled || s.ended {
			res := "nil"
			if !s.ended {
				res = mErrString(m.endScope(w, s, false))
			}
			if s.root != nil {
				m.cancel(w, s.root)
			}
			return res
		}
		errs := m.endScope(w, s, false)
		m.cancel(w, s.root)
		w.async = true
		// Whoever ends the scope first (Remove, or the safety net of the
		// scope or of an ancestor) ends each session once; Remove returns
		// the errors of what it ended itself, the hook sees all of them.
		e.match = func(got string) bool { return mSubset(got, errs) }
		return "a part of " + mErrString(errs)
	}
	panic(fmt.Sprintf("model: unknown op %v", op))
}

// mLateEnd is what Remove (nil: idempotent) and Commit (ErrScopeClosed:
// nothing was committed by this call) return on a scope that has already
// ended, by Remove, Commit, a parent or the safety net.
func mLateEnd(commit bool) string {
	if commit {
		return mClosed
	}
	return "nil"
}

// mSubset reports whether the error leaves of got are a sub-multiset of want.
func mSubset(got string, want []string) bool {
	if got == "nil" {
		return true
	}
	inner, ok := strings.CutPrefix(got, "err[")
	if !ok || !strings.HasSuffix(inner, "]") {
		return false
	}
	left := slices.Clone(want)
	for _, l := range strings.Split(strings.TrimSuffix(inner, "]"), ",") {
		i := slices.Index(left, l)
		if i < 0 {
			return false
		}
		left = slices.Delete(left, i, i+1)
	}
	return true
}

func (m *mModel) newSession(id string, reg int, plan mPlan) *mSessM {
	x := &mSessM{id: id, reg: reg, plan: plan}
	m.sessions[id] = x
	m.stats[reg].Created++
	m.stats[reg].Live++
	return x
}

// current models Current of reg in scope s (nil: a context without scope).
func (m *mModel) current(w *mWorkerM, i, reg int, key uint8, plan mPlan, s *mScopeM) string {
	if modelRegs[reg].keyed {
		if s != nil && s.ended {
			return mClosed // a late caller from an ended scope creates nothing
		}
		if x := w.keyed[key]; x != nil {
			return "sess " + x.id
		}
		x, res := m.create(w, i, reg, plan)
		if x != nil {
			w.keyed[key] = x
			w.korder = append(w.korder, x)
		}
		return res
	}
	if s.ended {
		return mClosed
	}
	if x := s.find(reg); x != nil {
		return "sess " + x.id
	}
	if s.netFired && !modelRegs[reg].noNet {
		return mNetFired
	}
	if s.parent != nil {
		// A child scope joins its parent's session (none of the model's
		// session types nests): the parent creates it if need be.
		res := m.current(w, i, reg, key, plan, s.parent)
		if !strings.HasPrefix(res, "sess ") {
			return res
		}
		if s.ended { // the parent's safety net ended it, and us, meanwhile
			m.raced = res
			return mClosed
		}
		s.sess = append(s.sess, &mSessM{id: strings.TrimPrefix(res, "sess "), reg: reg, shared: true})
		return res
	}
	x, res := m.create(w, i, reg, plan)
	if x == nil {
		return res
	}
	s.sess = append(s.sess, x)
	// The first session the net may end registers it; on a context
	// already cancelled it fires at once. WithoutSafetyNet sessions are
	// never ended by it.
	if !modelRegs[reg].noNet && !s.armed && !s.noNet && s.root != nil {
		s.armed = true
		if s.root.cancelled {
			m.netEnd(w, s)
		}
	}
	return res
}

// factoryRuns reports whether Current of reg in scope s (a child's
// parent) would run the factory: no scope up the chain holds the session
// or refuses to create it.
func (m *mModel) factoryRuns(s *mScopeM, reg int) bool {
	for ; s != nil; s = s.parent {
		if s.ended || s.find(reg) != nil || s.netFired && !modelRegs[reg].noNet {
			return false
		}
		if s.parent == nil {
			return true
		}
	}
	return false
}

func (m *mModel) create(w *mWorkerM, i, reg int, plan mPlan) (*mSessM, string) {
	id := modelSessID(w.id, i, reg)
	w.ev = append(w.ev, "create "+id)
	switch {
	case plan.factoryPanic:
		m.stats[reg].Failed++
		return nil, "panic factory-panic:" + id
	case plan.factoryErr:
		m.stats[reg].Failed++
		return nil, mErrString([]string{"factory:" + id})
	}
	return m.newSession(id, reg, plan), "sess " + id
}

// endOne models ScopedSession.Remove and ScopedSession.Commit.
func (m *mModel) endOne(w *mWorkerM, reg int, key uint8, s *mScopeM, commit bool) string {
	if modelRegs[reg].keyed {
		x := w.keyed[key]
		if x == nil {
			return "nil"
		}
		delete(w.keyed, key)
		w.korder = slices.DeleteFunc(w.korder, func(y *mSessM) bool { return y == x })
		return mErrString(mClassifyOne(x, commit, m.endSession(w, x, commit)))
	}
	if s.ended {
		if commit {
			return mClosed // the session was rolled back with its scope
		}
		return "nil"
	}
	if commit && s.netFired && !modelRegs[reg].noNet {
		return mNetFired
	}
	x := s.find(reg)
	if x == nil {
		return "nil"
	}
	s.sess = slices.DeleteFunc(s.sess, func(y *mSessM) bool { return y == x })
	return mErrString(mClassifyOne(x, commit, m.endSession(w, x, commit)))
}

// mClassifyOne adds what a failed ScopedSession.Commit means for the work.
func mClassifyOne(x *mSessM, commit bool, errs []string) []string {
	if commit && modelRegs[x.reg].commit && !x.shared && len(errs) > 0 {
		if x.plan.commitErr {
			return append(errs, "NotCommitted")
		}
		return append(errs, "CommittedCloseFailed")
	}
	return errs
}

// endSession ends one session: commit (if asked and possible) or rollback,
// then close; it returns the error leaves, which also reach the hook.
func (m *mModel) endSession(w *mWorkerM, x *mSessM, commit bool) []string {
	if x.shared {
		return nil // its owner, an ancestor, ends it
	}
	spec := modelRegs[x.reg]
	commit = commit && spec.commit
	var errs []string
	if commit {
		x.commits++
		w.ev = append(w.ev, "commit "+x.id)
		if x.plan.commitErr {
			errs = append(errs, "commit:"+x.id)
		}
	} else {
		x.rollbacks++
		w.ev = append(w.ev, "rollback "+x.id)
		if x.plan.rollbackErr {
			errs = append(errs, "rollback:"+x.id)
		}
	}
	if spec.close {
		x.closes++
		w.ev = append(w.ev, "close "+x.id)
		if x.plan.closeErr {
			errs = append(errs, "close:"+x.id)
		}
	}
	st := &m.stats[x.reg]
	st.Live--
	switch {
	case len(errs) > 0:
		st.Failed++
		m.hook[x.reg] = append(m.hook[x.reg], errs...)
	case commit:
		st.Committed++
	default:
		st.RolledBack++
	}
	return errs
}

// endScope models Scope.Remove (commit false) and Scope.Commit: open
// children first (newest first, rolled back), then with commit the
// committable sessions in creation order until one fails, then everything
// not committed newest first.
func (m *mModel) endScope(w *mWorkerM, s *mScopeM, commit bool) []string {
	if s.ended {
		return nil
	}
	s.ended = true
	var errs []string
	for i := len(s.children) - 1; i >= 0; i-- {
		errs = append(errs, m.endScope(w, s.children[i], false)...)
	}
	s.children = nil
	nodes := s.sess
	s.sess = nil
	done := make([]bool, len(nodes))
	if commit && s.netFired {
		// The net rolled back part of the scope: nothing more is committed.
		errs = append(errs, "ErrScopeClosed", "ErrScopeCancelled", "context.Canceled")
		for i := len(nodes) - 1; i >= 0; i-- {
			errs = append(errs, m.endSession(w, nodes[i], false)...)
		}
		errs = append(errs, "NotCommitted")
		if p := s.parent; p != nil {
			p.children = slices.DeleteFunc(p.children, func(c *mScopeM) bool { return c == s })
		}
		return errs
	}
	commitFailed, committed := false, false
	if commit {
		for i, x := range nodes {
			if !modelRegs[x.reg].commit || x.shared {
				continue
			}
			done[i] = true
			// A failed commit stops further commits; a close failing
			// after a successful commit stops nothing.
			e := m.endSession(w, x, true)
			errs = append(errs, e...)
			if x.plan.commitErr {
				commitFailed = true
				break
			}
			committed = true
		}
	}
	for i := len(nodes) - 1; i >= 0; i-- {
		if !done[i] {
			errs = append(errs, m.endSession(w, nodes[i], false)...)
		}
	}
	if commit && len(errs) > 0 {
		switch {
		case !commitFailed:
			errs = append(errs, "CommittedCloseFailed")
		case committed:
			errs = append(errs, "PartiallyCommitted")
		default:
			errs = append(errs, "NotCommitted")
		}
	}
	if p := s.parent; p != nil {
		p.children = slices.DeleteFunc(p.children, func(c *mScopeM) bool { return c == s })
	}
	return errs
}

// netEnd models the safety net ending s on its own goroutine: the whole
// scope, or, when it holds WithoutSafetyNet sessions, only the others.
func (m *mModel) netEnd(w *mWorkerM, s *mScopeM) {
	w.async = true
	w.wait = append(w.wait, w.index(s))
	if !slices.ContainsFunc(s.sess, func(x *mSessM) bool { return modelRegs[x.reg].noNet }) {
		m.endScope(w, s, false) // its errors reach only the hook
		return
	}
	s.netFired = true
	w.wait[len(w.wait)-1] = -1 - w.index(s) // partial: the scope stays open
	for i := len(s.sess) - 1; i >= 0; i-- {
		if x := s.sess[i]; !modelRegs[x.reg].noNet {
			m.endSession(w, x, false)
		}
	}
	s.sess = slices.DeleteFunc(s.sess, func(x *mSessM) bool { return !modelRegs[x.reg].noNet })
}

func (m *mModel) cancel(w *mWorkerM, r *mRootM) {
	if r.cancelled {
		return
	}
	r.cancelled = true
	for _, s := range w.scopes {
		if s.root == r && s.armed && !s.ended {
			m.netEnd(w, s)
		}
	}
}

// removeAll is the end of every worker's program: Remove every scope,
// newest first.
func (m *mModel) removeAll(w *mWorkerM) string {
	res := make([]string, 0, len(w.scopes))
	for i := len(w.scopes) - 1; i >= 0; i-- {
		r := "nil"
		if s := w.scopes[i]; !s.ended {
			r = mErrString(m.endScope(w, s, false))
		}
		res = append(res, fmt.Sprintf("%d:%s", i, r))
	}
	return strings.Join(res, ";")
}

// ---------------------------------------------------------------------------
// The runner: the same program against the library, one goroutine per worker.

// mSession is the session type of every ScopedSession of a program.
type mSession struct {
	id   string
	reg  int
	plan mPlan
	w    *rWorker

	commits, rollbacks, closes atomic.Int32
}

func (x *mSession) end(kind string, fail bool) error {
	switch kind {
	case "commit":
		x.commits.Add(1)
	case "rollback":
		x.rollbacks.Add(1)
	case "close":
		x.closes.Add(1)
	}
	x.w.event(kind + " " + x.id)
	if fail {
		return &mFault{kind: kind, id: x.id}
	}
	return nil
}

// mFault is an injected failure.
type mFault struct{ kind, id string }

func (f *mFault) Error() string { return "injected " + f.kind + " failure of " + f.id }

type (
	mWorkerKey struct{}
	mKeyCtx    struct{}
	mKeyVal    struct {
		w int
		k uint8
	}
)

type rHarness struct {
	regs   [mRegCount]*scoped.ScopedSession[*mSession]
	hookMu sync.Mutex
	hook   [mRegCount][]string
}

type rRoot struct{ cancel context.CancelFunc }

type rScope struct {
	ctx  context.Context
	s    *scoped.Scope
	root *rRoot
}

type rWorker struct {
	id     int
	h      *rHarness
	base   context.Context
	scopes []*rScope
	roots  []*rRoot

	mu      sync.Mutex // guards ev and created
	ev      []string
	created []*mSession

	// Read by the factory; written by the worker before it calls Current
	// or starts the goroutines that do.
	op      int
	plan    mPlan
	block   bool
	started chan struct{}
	release chan struct{}
}

type mObs struct {
	result string
	events []string
	scopes string
}

type mObserved struct {
	ops      [][]mObs
	closeRes [mRegCount]string
	closeEv  [][]string
	stats    [mRegCount]scoped.Stats
	hook     [mRegCount][]string
	sessions map[string]string
	live     int64 // LiveScopes after the program, minus before
	hung     string
}

func newHarness() *rHarness {
	h := &rHarness{}
	for r, spec := range modelRegs {
		opts := []scoped.Option{
			scoped.WithName(spec.name),
			scoped.WithRollback(func(_ context.Context, x *mSession) error { return x.end("rollback", x.plan.rollbackErr) }),
			scoped.WithTeardownErrorHook(func(_ context.Context, err error) {
				var l []string
				mLeaves(err, &l)
				h.hookMu.Lock()
				defer h.hookMu.Unlock()
				h.hook[r] = append(h.hook[r], l...)
			}),
		}
		if spec.commit {
			opts = append(opts, scoped.WithCommit(func(_ context.Context, x *mSession) error { return x.end("commit", x.plan.commitErr) }))
		} else {
			opts = append(opts, scoped.WithCommit[*mSession](nil))
		}
		if spec.close {
			opts = append(opts, scoped.WithClose(func(_ context.Context, x *mSession) error { return x.end("close", x.plan.closeErr) }))
		} else {
			opts = append(opts, scoped.WithClose[*mSession](nil))
		}
		if spec.keyed {
			opts = append(opts, scoped.WithScopeFunc(scoped.ContextValue(mKeyCtx{})))
		}
		if spec.noNet {
			opts = append(opts, scoped.WithoutSafetyNet())
		}
		h.regs[r] = scoped.New(h.factory(r), opts...)
	}
	return h
}

func (h *rHarness) factory(reg int) func(context.Context) (*mSession, error) {
	return func(ctx context.Context) (*mSession, error) {
		w, _ := ctx.Value(mWorkerKey{}).(*rWorker)
		if w == nil {
			return nil, errors.New("model: the factory's context lacks the caller's values")
		}
		id := modelSessID(w.id, w.op, reg)
		w.event("create " + id)
		if w.block {
			close(w.started)
			select {
			case <-w.release:
			case <-time.After(modelBound):
				return nil, errors.New("model: the factory was never released")
			}
		}
		p := w.plan
		if p.factoryPanic {
			panic(&mFault{kind: "factory-panic", id: id})
		}
		if p.factoryErr {
			return nil, &mFault{kind: "factory", id: id}
		}
		x := &mSession{id: id, reg: reg, plan: p, w: w}
		w.mu.Lock()
		w.created = append(w.created, x)
		w.mu.Unlock()
		return x, nil
	}
}

func (w *rWorker) event(e string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ev = append(w.ev, e)
}

func (w *rWorker) evLen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ev)
}

func (w *rWorker) evSince(n int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ev[n:])
}

func mLeaves(err error, out *[]string) {
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			mLeaves(e, out)
		}
		return
	case interface{ Unwrap() error }:
		if e := u.Unwrap(); e != nil {
			mLeaves(e, out)
			return
		}
	}
	var name string
	if f, ok := err.(*mFault); ok {
		name = f.kind + ":" + f.id
	} else {
		switch err {
		case scoped.ErrScopeClosed:
			name = "ErrScopeClosed"
		case scoped.ErrNoScope:
			name = "ErrNoScope"
		case scoped.ErrClosed:
			name = "ErrClosed"
		case scoped.ErrInvalidKey:
			name = "ErrInvalidKey"
		case scoped.ErrFactoryPanicked:
			name = "ErrFactoryPanicked"
		case scoped.ErrNotBound:
			name = "ErrNotBound"
		case scoped.ErrNotCommitted:
			name = "NotCommitted"
		case scoped.ErrPartiallyCommitted:
			name = "PartiallyCommitted"
		case scoped.ErrCommittedCloseFailed:
			name = "CommittedCloseFailed"
		case scoped.ErrReentrant:
			name = "ErrReentrant"
		case scoped.ErrScopeCancelled:
			name = "ErrScopeCancelled"
		case context.Canceled:
			name = "context.Canceled"
		default:
			name = "other:" + err.Error()
		}
	}
	*out = append(*out, name)
}

func mErrOf(err error) string {
	if err == nil {
		return "nil"
	}
	var l []string
	mLeaves(err, &l)
	return mErrString(l)
}

func (w *rWorker) current(r *scoped.ScopedSession[*mSession], ctx context.Context, viaBind bool) (res string) {
	defer func() {
		if p := recover(); p != nil {
			if f, ok := p.(*mFault); ok {
				res = "panic " + f.kind + ":" + f.id
			} else {
				res = fmt.Sprintf("panic other:%v", p)
			}
		}
	}()
	var x *mSession
	var err error
	if viaBind {
		x, err = scoped.Current[*mSession](scoped.Bind(ctx, r))
	} else {
		x, err = r.Current(ctx)
	}
	switch {
	case err != nil:
		if x != nil {
			return "session and error " + mErrOf(err)
		}
		return mErrOf(err)
	case x == nil:
		return "sess <nil>"
	}
	return "sess " + x.id
}

func (w *rWorker) withKey(ctx context.Context, reg int, key uint8) context.Context {
	if modelRegs[reg].keyed {
		return context.WithValue(ctx, mKeyCtx{}, mKeyVal{w: w.id, k: key})
	}
	return ctx
}

func (w *rWorker) add(ctx context.Context, s *scoped.Scope, root *rRoot) string {
	w.scopes = append(w.scopes, &rScope{ctx: ctx, s: s, root: root})
	return fmt.Sprintf("scope %d", len(w.scopes)-1)
}

func (w *rWorker) newRoot() (context.Context, *rRoot) {
	ctx, cancel := context.WithCancel(w.base)
	r := &rRoot{cancel: cancel}
	w.roots = append(w.roots, r)
	return ctx, r
}

// together runs f(j) for j < n on n goroutines released at once, and
// waits for them within modelBound.
func together(n int, f func(j int)) bool {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for j := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(j)
		}()
	}
	close(start)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(modelBound):
		return false
	}
}

func (w *rWorker) exec(i int, op mOp) string {
	var s *rScope
	if op.usesScope() {
		s = w.scopes[op.s]
	}
	reg := int(op.reg) % mRegCount
	r := w.h.regs[reg]
	w.op, w.plan = i, op.plan
	switch op.kind {
	case mBegin:
		switch op.variant {
		case 1:
			ctx, sc := scoped.Begin(w.base)
			return w.add(ctx, sc, nil)
		case 2:
			ctx, root := w.newRoot()
			ctx, sc := scoped.BeginWithoutSafetyNet(ctx)
			return w.add(ctx, sc, root)
		default:
			ctx, root := w.newRoot()
			ctx, sc := scoped.Begin(ctx)
			return w.add(ctx, sc, root)
		}
	case mBeginChild:
		if op.variant == 1 {
			ctx, sc := scoped.BeginWithoutSafetyNet(s.ctx)
			return w.add(ctx, sc, s.root)
		}
		ctx, sc := scoped.Begin(s.ctx)
		return w.add(ctx, sc, s.root)
	case mDetach:
		ctx, sc := scoped.Detach(s.ctx)
		return w.add(ctx, sc, nil)
	case mCurrent:
		return w.current(r, w.withKey(s.ctx, reg, op.key), op.variant == 1 && !modelRegs[reg].keyed)
	case mHas:
		return strconv.FormatBool(r.Has(w.withKey(s.ctx, reg, op.key)))
	case mSessRemove:
		return mErrOf(r.Remove(w.withKey(s.ctx, reg, op.key)))
	case mSessCommit:
		return mErrOf(r.Commit(w.withKey(s.ctx, reg, op.key)))
	case mRemove:
		return mErrOf(s.s.Remove())
	case mCommit:
		return mErrOf(s.s.Commit())
	case mCancel:
		if s.root == nil {
			return "noop"
		}
		s.root.cancel()
		return "cancel"
	case mNoScope:
		ctx := w.base
		if op.variant != 3 {
			ctx = w.withKey(ctx, reg, op.key)
		}
		switch op.variant {
		case 1:
			return strconv.FormatBool(r.Has(ctx))
		case 2:
			return mErrOf(r.Remove(ctx))
		default:
			return w.current(r, ctx, false)
		}
	case mConcCurrent:
		n := int(op.n)
		// Without the cancellation: a waiter must wait for the session,
		// not return early because the scope's context is cancelled.
		ctx := w.withKey(context.WithoutCancel(s.ctx), reg, op.key)
		out := make([]string, n)
		if !together(n, func(j int) { out[j] = w.current(r, ctx, false) }) {
			return "hung: concurrent Current did not return"
		}
		sort.Strings(out)
		return strings.Join(out, "|")
	case mConcEnd:
		n := int(op.n)
		out := make([]string, n)
		if !together(n, func(j int) {
			if op.commit {
				out[j] = mErrOf(s.s.Commit())
			} else {
				out[j] = mErrOf(s.s.Remove())
			}
		}) {
			return "hung: concurrent end did not return"
		}
		sort.Strings(out)
		return strings.Join(out, "|")
	case mEndDuringCreate:
		started, release, curDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
		w.started, w.release, w.block = started, release, true
		endRes := make(chan string, 1)
		go func() {
			defer close(release)
			select {
			case <-started: // the factory runs: end the scope under it
			case <-curDone: // Current did not run the factory
			}
			if op.commit {
				endRes <- mErrOf(s.s.Commit())
			} else {
				endRes <- mErrOf(s.s.Remove())
			}
		}()
		cur := w.current(r, s.ctx, false)
		w.block = false
		close(curDone)
		select {
		case end := <-endRes:
			return "current=" + cur + " end=" + end
		case <-time.After(modelBound):
			return "current=" + cur + " end=hung"
		}
	case mRemoveRacesCancel:
		var res string
		ok := together(2, func(j int) {
			if j == 0 {
				res = mErrOf(s.s.Remove())
			} else if s.root != nil {
				s.root.cancel()
			}
		})
		if !ok {
			return "hung: Remove racing cancel did not return"
		}
		return res
	}
	return "unknown op"
}

// awaitEnded waits until the safety net has ended scope idx and finished
// tearing it down.
func (w *rWorker) awaitEnded(idx int) string {
	if idx < 0 {
		return w.awaitNetFired(-1 - idx)
	}
	if idx >= len(w.scopes) {
		return fmt.Sprintf(" [model expects the safety net to end scope %d, which does not exist]", idx)
	}
	s := w.scopes[idx].s
	deadline := time.Now().Add(modelBound)
	for s.Err() == nil {
		if time.Now().After(deadline) {
			return fmt.Sprintf(" [the safety net did not end scope %d within %v]", idx, modelBound)
		}
		time.Sleep(50 * time.Microsecond)
	}
	// Ended: Remove only waits until the teardown has finished.
	if err := s.Remove(); err != nil {
		return fmt.Sprintf(" [Remove of scope %d, already ended by its safety net, returned %v]", idx, err)
	}
	return ""
}

// netFired holds, per scope, a channel closed when a safety net that ended
// only part of that scope has finished.
var netFired sync.Map // *scoped.Scope → chan struct{}

func netFiredChan(s *scoped.Scope) chan struct{} {
	ch, _ := netFired.LoadOrStore(s, make(chan struct{}))
	return ch.(chan struct{})
}

// awaitNetFired waits until the safety net of scope idx, which holds
// WithoutSafetyNet sessions, has ended the others.
func (w *rWorker) awaitNetFired(idx int) string {
	select {
	case <-netFiredChan(w.scopes[idx].s):
		return ""
	case <-time.After(modelBound):
		return fmt.Sprintf(" [the safety net did not end the sessions of scope %d within %v]", idx, modelBound)
	}
}

func (w *rWorker) states() string {
	st := make([]string, len(w.scopes))
	for i, s := range w.scopes {
		if s.s.Err() != nil {
			st[i] = "E"
		} else {
			st[i] = "O" + strconv.Itoa(s.s.Len())
		}
	}
	return strings.Join(st, " ")
}

func (w *rWorker) run(ops []mOp, exp []mExpect) []mObs {
	obs := make([]mObs, 0, len(ops)+1)
	for i, op := range ops {
		start := w.evLen()
		res := w.exec(i, op)
		for _, idx := range exp[i].wait {
			res += w.awaitEnded(idx)
		}
		obs = append(obs, mObs{result: res, events: w.evSince(start), scopes: w.states()})
	}
	start := w.evLen()
	res := make([]string, 0, len(w.scopes))
	for i := len(w.scopes) - 1; i >= 0; i-- {
		res = append(res, fmt.Sprintf("%d:%s", i, mErrOf(w.scopes[i].s.Remove())))
	}
	obs = append(obs, mObs{result: strings.Join(res, ";"), events: w.evSince(start), scopes: w.states()})
	for _, r := range w.roots {
		r.cancel()
	}
	return obs
}

func runnerRun(p mProgram, x *mExpected) *mObserved {
	baseline := scoped.LiveScopes()
	h := newHarness()
	o := &mObserved{ops: make([][]mObs, len(p)), closeEv: make([][]string, len(p)), sessions: map[string]string{}}
	workers := make([]*rWorker, len(p))
	var wg sync.WaitGroup
	for wi, ops := range p {
		w := &rWorker{id: wi, h: h}
		w.base = context.WithValue(context.Background(), mWorkerKey{}, w)
		workers[wi] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.ops[wi] = w.run(ops, x.ops[wi])
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Duration(p.size()+10) * modelBound):
		o.hung = "the workers did not finish"
		return o
	}
	starts := make([]int, len(workers))
	for i, w := range workers {
		starts[i] = w.evLen()
	}
	for r, reg := range h.regs {
		o.closeRes[r] = mErrOf(reg.Close())
	}
	for i, w := range workers {
		o.closeEv[i] = w.evSince(starts[i])
		for _, x := range w.created {
			o.sessions[x.id] = fmt.Sprintf("commits=%d rollbacks=%d closes=%d", x.commits.Load(), x.rollbacks.Load(), x.closes.Load())
		}
	}
	for r, reg := range h.regs {
		o.stats[r] = reg.Stats()
		h.hookMu.Lock()
		o.hook[r] = slices.Sorted(slices.Values(h.hook[r]))
		h.hookMu.Unlock()
	}
	deadline := time.Now().Add(modelBound)
	for o.live = scoped.LiveScopes() - baseline; o.live != 0 && time.Now().Before(deadline); o.live = scoped.LiveScopes() - baseline {
		time.Sleep(time.Millisecond)
	}
	return o
}

// compare returns a description of the first difference, or "".
func modelCompare(p mProgram, x *mExpected, o *mObserved) string {
	if o.hung != "" {
		return o.hung
	}
	for w := range p {
		for i := range x.ops[w] {
			e, g := x.ops[w][i], o.ops[w][i]
			what := "the final Remove of every scope"
			if i < len(p[w]) {
				what = fmt.Sprintf("op %d: %v", i, p[w][i])
			}
			ok := g.result == e.want
			if e.match != nil {
				ok = e.match(g.result)
			}
			if !ok {
				return fmt.Sprintf("worker %d, %s:\n  returned %s\n  want     %s", w, what, g.result, e.want)
			}
			ge, ee := g.events, e.events
			if e.unordered {
				ge, ee = slices.Sorted(slices.Values(ge)), slices.Sorted(slices.Values(ee))
			}
			if !slices.Equal(ge, ee) {
				return fmt.Sprintf("worker %d, %s:\n  events %q\n  want   %q (unordered: %v)", w, what, g.events, e.events, e.unordered)
			}
			if g.scopes != e.scopes {
				return fmt.Sprintf("worker %d, %s:\n  scopes after it [%s]\n  want            [%s] (E ended, O<n> open holding n sessions)", w, what, g.scopes, e.scopes)
			}
		}
	}
	for r := range modelRegs {
		if o.closeRes[r] != x.closeRes[r] {
			return fmt.Sprintf("Close of ScopedSession %s returned %s, want %s", modelRegs[r].name, o.closeRes[r], x.closeRes[r])
		}
	}
	for w := range p {
		if !slices.Equal(o.closeEv[w], x.closeEv[w]) {
			return fmt.Sprintf("Close: events of worker %d %q, want %q", w, o.closeEv[w], x.closeEv[w])
		}
	}
	for r := range modelRegs {
		if o.stats[r] != x.stats[r] {
			return fmt.Sprintf("Stats of ScopedSession %s = %+v, want %+v", modelRegs[r].name, o.stats[r], x.stats[r])
		}
		if !slices.Equal(o.hook[r], x.hook[r]) {
			return fmt.Sprintf("teardown error hook of ScopedSession %s saw %q, want %q", modelRegs[r].name, o.hook[r], x.hook[r])
		}
	}
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range x.sessions {
			if !yield(id) {
				return
			}
		}
		for id := range o.sessions {
			if _, ok := x.sessions[id]; !ok && !yield(id) {
				return
			}
		}
	})
	for _, id := range ids {
		if o.sessions[id] != x.sessions[id] {
			return fmt.Sprintf("session %s: %q, want %q (empty: never created)", id, o.sessions[id], x.sessions[id])
		}
	}
	if o.live != 0 {
		return fmt.Sprintf("LiveScopes is %+d after the program", o.live)
	}
	return ""
}

// modelCheck runs p against the model and the library and returns the
// first difference, or "".
func modelCheck(p mProgram) string {
	x := modelRun(p)
	return modelCompare(p, x, runnerRun(p, x))
}

// modelShrink deletes operations (and whole workers) from a failing program
// as long as it keeps failing, trying each candidate a few times since the
// failure may depend on how goroutines interleave.
func modelShrink(p mProgram, deadline time.Time) (mProgram, string, int) {
	runs := 0
	fails := func(c mProgram) string {
		for range 3 {
			runs++
			if d := modelCheck(c); d != "" {
				return d
			}
		}
		return ""
	}
	last := fails(p)
	if last == "" {
		return p, "", runs // did not fail again: keep the original
	}
	for changed := true; changed && time.Now().Before(deadline); {
		changed = false
		for w := 0; w < len(p) && len(p) > 1; w++ {
			c := slices.Delete(slices.Clone(p), w, w+1)
			if d := fails(c); d != "" {
				p, last, changed = c, d, true
				w--
			}
		}
		for w := 0; w < len(p); w++ {
			for chunk := max(len(p[w])/2, 1); chunk >= 1; chunk /= 2 {
				for i := 0; i+chunk <= len(p[w]) && time.Now().Before(deadline); {
					c := slices.Clone(p)
					c[w] = slices.Delete(slices.Clone(p[w]), i, i+chunk)
					c = c.normalize()
					if len(c) == len(p) && c.size() < p.size() {
						if d := fails(c); d != "" {
							p, last, changed = c, d, true
							continue
						}
					}
					i += chunk
				}
			}
		}
	}
	return p, last, runs
}

// TestModelRandomPrograms is the model-based test of the core (issue 6).
func TestModelRandomPrograms(t *testing.T) {
	scoped.SetNetFiredHook(func(s *scoped.Scope) { close(netFiredChan(s)) })
	defer scoped.SetNetFiredHook(nil)
	c := modelSettings(t)
	started := time.Now()
	ran, ops := 0, 0
	defer func() {
		t.Logf("model: seed %d, %d programs, %d operations, %v (reproduce: SCOPED_MODEL_SEED=%d go test -race -count=1 -run '^TestModelRandomPrograms$' .)",
			c.seed, ran, ops, time.Since(started).Round(time.Millisecond), c.seed)
	}()
	for i := 0; i < c.programs; i++ {
		if c.only >= 0 && i != c.only {
			continue
		}
		if time.Since(started) > c.budget {
			break
		}
		rng := rand.New(rand.NewPCG(c.seed, uint64(i)))
		workers := 2 + rng.IntN(c.maxWorkers-1)
		p := modelGenerate(rng, workers, 5+rng.IntN(c.maxOps-4))
		ran++
		ops += p.size()
		d := modelCheck(p)
		if d == "" {
			continue
		}
		if strings.Contains(d, "hung") || strings.Contains(d, "did not finish") {
			t.Fatalf("model: seed %d, program %d: %s\nprogram:\n%v", c.seed, i, d, p)
		}
		small, sd, runs := modelShrink(p, time.Now().Add(time.Minute))
		if sd == "" {
			small, sd = p, d+"\n  (it did not fail again in 3 more runs: the failure depends on scheduling)"
		}
		t.Fatalf("model: the library disagrees with the model.\n"+
			"seed %d, program %d; reproduce with SCOPED_MODEL_SEED=%d SCOPED_MODEL_ONLY=%d go test -race -count=1 -run '^TestModelRandomPrograms$' .\n"+
			"first difference (original program, %d ops): %s\n\n"+
			"shortest failing program found (%d ops, %d runs while shrinking):\n%v\ndifference: %s",
			c.seed, i, c.seed, i, p.size(), d, small.size(), runs, small, sd)
	}
}
