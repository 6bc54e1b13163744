package scoped_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

// floorScope is the least a scoped session can cost while it keeps the
// promises that cost something: a scope allocated at Begin, the session's
// entry allocated at its creation, a single flight of first calls (the
// creation registered, then published, under the scope's one mutex), a
// list that Current reads without a lock, a count of live scopes and of
// sessions created and ended, and an end that marks the scope ended under
// the mutex. It has no nesting, hooks, events, safety net, panic safety
// or outcome accounting: it measures the floor of the design, not a
// usable library, for the core's bars (issue 21, BENCHMARKS.md).
type floorScope struct {
	mu       sync.Mutex
	sessions atomic.Pointer[floorEntry]
	creating *floorEntry
	ended    bool
	// The rest of a Scope's size in the core (96 bytes): its parent
	// context, parent and children, the safety net's registration.
	_ [8]uintptr
}

type floorEntry struct {
	owner *floorOwner
	next  *floorEntry
	tx    *benchTx
	// The rest of an entry's size in the core (112-byte size class):
	// what ending and nesting a session need.
	_ [10]uintptr
}

type floorOwner struct{ created, ended atomic.Int64 }

var floorLive atomic.Int64

func floorBegin() *floorScope {
	floorLive.Add(1)
	return new(floorScope)
}

//go:noinline
func (o *floorOwner) current(s *floorScope) *benchTx {
	for e := s.sessions.Load(); e != nil; e = e.next {
		if e.owner == o {
			return e.tx
		}
	}
	s.mu.Lock()
	if s.ended || s.creating != nil {
		panic("the floor measures one caller in an open scope")
	}
	e := &floorEntry{owner: o}
	s.creating = e
	s.mu.Unlock()
	e.tx = new(benchTx)
	o.created.Add(1)
	s.mu.Lock()
	s.creating = nil
	e.next = s.sessions.Load()
	s.sessions.Store(e)
	s.mu.Unlock()
	return e.tx
}

//go:noinline
func (s *floorScope) remove() {
	s.mu.Lock()
	head := s.sessions.Load()
	s.sessions.Store(nil)
	s.ended = true
	s.mu.Unlock()
	for e := head; e != nil; e = e.next {
		_ = e.tx.Rollback()
		e.owner.ended.Add(1)
	}
	floorLive.Add(-1)
}

// BenchmarkScopeFloor measures floorScope against the hand-written helper:
// Begin, one Current, Remove, on a context that is never cancelled (no
// safety net), as BenchmarkScopeNet/Net=none does for the core.
func BenchmarkScopeFloor(b *testing.B) {
	b.Run("Impl=floor", func(b *testing.B) {
		o := new(floorOwner)
		b.ReportAllocs()
		for b.Loop() {
			s := floorBegin()
			if o.current(s) == nil {
				b.Fatal("lost")
			}
			s.remove()
		}
	})
	b.Run("Impl=hand-written", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			handScope(context.Background(), true)
		}
	})
}
