package scoped_test

// The model-based test, part 1 of 3: settings and the generator of random
// programs. The test itself (TestModelRandomPrograms) and what it checks
// are described in model_run_test.go; the reference model is in
// model_ref_test.go.

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
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
