package scoped_test

// The model-based test, part 2 of 3: the reference model, which says what
// every operation of a program must return and cause. See model_run_test.go.

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/go-scoped/scoped"
)

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
	byNet    bool // the net ended the whole scope (or its parent): its Current says so, with the cause
	ended    bool
	sess     []*mSessM // ready sessions, oldest first
	// A session was committed by hand (ScopedSession.Commit): a failed
	// commit of the scope afterwards is partial. lost: a hand commit
	// failed, or the net rolled back a session with a commit.
	handSaved, lost bool
}

// closed is what Current, and a ScopedSession's Commit, say in s once it
// has ended: after the net ended it, that and the context's cause.
func (s *mScopeM) closed() string {
	if s.byNet {
		return mNetFired
	}
	return mClosed
}

type mRootM struct{ cancelled bool }

type mWorkerM struct {
	id       int
	netRaced bool // a Remove of one of its scopes raced that scope's safety net
	scopes   []*mScopeM
	keyed    map[uint8]*mSessM
	korder   []*mSessM // keyed sessions, oldest first

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
	if w.netRaced {
		// A scope of w ended by Remove or by the net, whichever came
		// first: a later Current in it may say either.
		match, want := e.match, e.want
		closed := func(s string) string { return strings.ReplaceAll(s, mNetFired, mClosed) }
		e.match = func(got string) bool {
			if match != nil {
				return match(got) || match(closed(got)) || match(strings.ReplaceAll(got, mClosed, mNetFired))
			}
			return closed(got) == closed(want)
		}
	}
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
			ns.ended, ns.byNet = true, s.byNet // born ended, saying why its parent ended
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
			return mLateEnd(s, op.kind == mCommit)
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
			late := s.closed()
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
		late := mLateEnd(s, op.commit)
		res := late
		if !s.ended {
			res = mErrString(m.endScope(w, s, op.commit))
		}
		out := append([]string{res}, slices.Repeat([]string{late}, int(op.n)-1)...)
		sort.Strings(out)
		return strings.Join(out, "|")
	case mEndDuringCreate:
		defer func() {
			if w.async {
				// The creation armed a net on a cancelled context, which
				// races this end: whether the net or the end ended a
				// scope, which Current tells, is not known.
				w.netRaced = true
			}
		}()
		end := func() string {
			if s.ended {
				return mLateEnd(s, op.commit)
			}
			return mErrString(m.endScope(w, s, op.commit))
		}
		if s.ended {
			return "current=" + s.closed() + " end=" + end()
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
		w.netRaced = true // whether the net ended it, which Current tells, is not known
		// Whoever ends the scope first (Remove, or the safety net of the
		// scope or of an ancestor) ends each session once; Remove returns
		// the errors of what it ended itself, the hook sees all of them.
		e.match = func(got string) bool { return mSubset(got, errs) }
		return "a part of " + mErrString(errs)
	}
	panic(fmt.Sprintf("model: unknown op %v", op))
}

// mLateEnd is what Remove (nil: idempotent) and Commit (ErrScopeClosed:
// nothing was committed by this call; and, after the safety net ended the
// scope, ErrScopeCancelled with the cause) return on a scope that has
// already ended, by Remove, Commit, a parent or the safety net.
func mLateEnd(s *mScopeM, commit bool) string {
	if commit {
		return s.closed()
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
			return s.closed() // a late caller from an ended scope creates nothing
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
		return s.closed()
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
			return s.closed()
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
		return mErrString(mClassifyOne(x, commit, m.endSession(w, x, commit), false))
	}
	if s.ended {
		if commit {
			return s.closed() // the session was rolled back with its scope
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
	savedBefore := s.handSaved && s.parent == nil // a child's hand commits released savepoints
	errs := m.endSession(w, x, commit)
	if commit && modelRegs[x.reg].commit && !x.shared {
		s.handSaved = s.handSaved || !x.plan.commitErr
		s.lost = s.lost || x.plan.commitErr
	}
	return mErrString(mClassifyOne(x, commit, errs, savedBefore))
}

// mClassifyOne adds what a failed ScopedSession.Commit means for the work.
func mClassifyOne(x *mSessM, commit bool, errs []string, savedBefore bool) []string {
	if commit && modelRegs[x.reg].commit && !x.shared && len(errs) > 0 {
		switch {
		case x.plan.commitErr && savedBefore: // an earlier hand commit of the unit saved
			return append(errs, "PartiallyCommitted")
		case x.plan.commitErr:
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
		if c := s.children[i]; !c.ended {
			c.byNet = s.byNet // a child ended by its parent's net says so
		}
		errs = append(errs, m.endScope(w, s.children[i], false)...)
	}
	s.children = nil
	nodes := s.sess
	s.sess = nil
	done := make([]bool, len(nodes))
	holds := slices.ContainsFunc(nodes, func(x *mSessM) bool { return modelRegs[x.reg].commit && !x.shared })
	if commit && s.netFired && (s.lost || holds) {
		// The net rolled back part of the scope, or its context ended with
		// work still to commit: nothing more is committed.
		errs = append(errs, "ErrScopeClosed", "ErrScopeCancelled", "context.Canceled")
		for i := len(nodes) - 1; i >= 0; i-- {
			errs = append(errs, m.endSession(w, nodes[i], false)...)
		}
		if s.handSaved {
			errs = append(errs, "PartiallyCommitted")
		} else {
			errs = append(errs, "NotCommitted")
		}
		if p := s.parent; p != nil {
			p.children = slices.DeleteFunc(p.children, func(c *mScopeM) bool { return c == s })
		}
		return errs
	}
	commitFailed, committed := false, s.handSaved
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
	lostBefore := "NotCommitted" // a hand commit failed (or the net rolled back work) before
	if s.handSaved || holds {
		lostBefore = "PartiallyCommitted"
	}
	if commit && s.lost && len(errs) == 0 {
		errs = append(errs, lostBefore)
	} else if commit && len(errs) > 0 {
		switch {
		case !commitFailed && s.lost: // what this commit saved is not all the unit meant to
			errs = append(errs, lostBefore)
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
// scope, or, when it holds WithoutSafetyNet sessions, only the others, or
// nothing when it holds no session.
func (m *mModel) netEnd(w *mWorkerM, s *mScopeM) {
	if len(s.sess) == 0 {
		// Every session was ended by hand: the net finds nothing to end,
		// changes no outcome, and is registered again by the next session.
		s.armed = false
		w.wait = append(w.wait, -1-w.index(s))
		return
	}
	w.async = true
	w.wait = append(w.wait, w.index(s))
	if !slices.ContainsFunc(s.sess, func(x *mSessM) bool { return modelRegs[x.reg].noNet }) {
		s.byNet = true
		m.endScope(w, s, false) // its errors reach only the hook
		return
	}
	s.netFired = true
	w.wait[len(w.wait)-1] = -1 - w.index(s) // partial: the scope stays open
	for i := len(s.sess) - 1; i >= 0; i-- {
		if x := s.sess[i]; !modelRegs[x.reg].noNet {
			m.endSession(w, x, false)
			s.lost = s.lost || modelRegs[x.reg].commit && !x.shared
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
