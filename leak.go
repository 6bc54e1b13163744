package scoped

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

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
// BeginIndependent, BeginWithoutSafetyNet) and keyed sessions created,
// across the process, until [Tracker.Stop]; [Tracker.Open] lists those
// still open. It is meant for tests (each record reads the stack); the
// scopedtest package wraps it as a one-line check. Trackers may overlap.
func Track() *Tracker {
	t := &Tracker{open: map[any]trackRec{}}
	trackers.Lock()
	trackers.list = append(trackers.list, t)
	trackers.Unlock()
	tracking.Add(1)
	return t
}

// A Tracker records scopes and keyed sessions; see [Track].
type Tracker struct {
	mu      sync.Mutex
	open    map[any]trackRec // *Scope or *node → where
	stopped bool
}

// Open returns the scopes and keyed sessions recorded and not yet ended,
// oldest first.
func (t *Tracker) Open() []Leak {
	t.mu.Lock()
	recs := make([]trackRec, 0, len(t.open))
	for _, r := range t.open {
		recs = append(recs, r)
	}
	t.mu.Unlock()
	sortRecs(recs)
	leaks := make([]Leak, len(recs))
	for i, r := range recs {
		leaks[i] = r.leak
	}
	return leaks
}

// Stop ends the recording; Open then lists what was open when it stopped.
func (t *Tracker) Stop() {
	trackers.Lock()
	defer trackers.Unlock()
	if t.stopped {
		return
	}
	t.stopped = true
	for i, x := range trackers.list {
		if x == t {
			trackers.list = append(trackers.list[:i], trackers.list[i+1:]...)
			break
		}
	}
	tracking.Add(-1)
}

var (
	tracking atomic.Int32 // running trackers
	trackers struct {
		sync.Mutex
		list []*Tracker
	}
	trackSeq atomic.Uint64
)

type trackRec struct {
	seq  uint64
	leak Leak
}

func sortRecs(r []trackRec) {
	for i := 1; i < len(r); i++ {
		for j := i; j > 0 && r[j].seq < r[j-1].seq; j-- {
			r[j], r[j-1] = r[j-1], r[j]
		}
	}
}

// track records x (a *Scope or a keyed *node) in every running tracker.
// It reports whether it did, so that the end needs no lookup otherwise.
func track(x any, what string) bool {
	if tracking.Load() == 0 {
		return false
	}
	rec := trackRec{seq: trackSeq.Add(1), leak: Leak{What: what, Where: callerOutside()}}
	trackers.Lock()
	defer trackers.Unlock()
	for _, t := range trackers.list {
		t.mu.Lock()
		t.open[x] = rec
		t.mu.Unlock()
	}
	return len(trackers.list) > 0
}

// untrack forgets x in every running tracker.
func untrack(x any) {
	trackers.Lock()
	defer trackers.Unlock()
	for _, t := range trackers.list {
		t.mu.Lock()
		delete(t.open, x)
		t.mu.Unlock()
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
