package scoped

import (
	"math/rand/v2"
	"sync/atomic"
)

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
func LiveScopes() int64 { return liveScopes.load() }

var liveScopes counter

// stripes spreads a counter over several cache lines, so that scopes on
// different cores do not all contend on one atomic word.
const stripes = 8

// counter is an int64 split into padded stripes; writers add to the
// stripe of their scope, readers sum them.
type counter struct {
	cells [stripes]struct {
		n atomic.Int64
		_ [56]byte
	}
}

func (c *counter) add(stripe uint32, d int64) { c.cells[stripe%stripes].n.Add(d) }

func (c *counter) load() int64 {
	var n int64
	for i := range c.cells {
		n += c.cells[i].n.Load()
	}
	return n
}

// newStripe picks the stripe a scope writes its counters to.
func newStripe() uint32 { return rand.Uint32() }

// sessionCounters are the counters behind [Stats]. Live is derived, so
// that creating and ending a session cost one atomic add each.
type sessionCounters struct {
	created, committed, rolledBack counter
	createFailed, endFailed        counter
}

func (c *sessionCounters) snapshot() Stats {
	// Read the ends before the creations, so that a session ending
	// concurrently can never make Live negative.
	st := Stats{
		Committed:  c.committed.load(),
		RolledBack: c.rolledBack.load(),
	}
	endFailed := c.endFailed.load()
	st.Created = c.created.load()
	st.Failed = c.createFailed.load() + endFailed
	st.Live = st.Created - st.Committed - st.RolledBack - endFailed
	return st
}
