package scopedotel

import (
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
)

// openSpans holds the span of every session between its Created event and
// its end event, by the session's Event.ID. It is sharded so that sessions
// ending on different cores rarely contend, and bounded so that sessions
// that never end cannot grow it forever.
type openSpans struct {
	max    int64
	n      atomic.Int64
	shards [32]struct {
		mu sync.Mutex
		m  map[uint64]trace.Span
		_  [40]byte // keep shards on separate cache lines
	}
}

func newOpenSpans(max int) *openSpans {
	t := &openSpans{max: int64(max)}
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]trace.Span)
	}
	return t
}

// reserve claims room for one span; false: the table is full.
func (t *openSpans) reserve() bool {
	if t.n.Add(1) > t.max {
		t.n.Add(-1)
		return false
	}
	return true
}

// put stores a span for which reserve returned true.
func (t *openSpans) put(id uint64, s trace.Span) {
	sh := &t.shards[id%uint64(len(t.shards))]
	sh.mu.Lock()
	sh.m[id] = s
	sh.mu.Unlock()
}

// take removes and returns the span of id, if there is one. The caller
// ends it after the lock is released: ending a span runs the SDK's span
// processors, which are user code.
func (t *openSpans) take(id uint64) (trace.Span, bool) {
	sh := &t.shards[id%uint64(len(t.shards))]
	sh.mu.Lock()
	s, ok := sh.m[id]
	if ok {
		delete(sh.m, id)
	}
	sh.mu.Unlock()
	if ok {
		t.n.Add(-1)
	}
	return s, ok
}

// release gives back room reserved for a span that is not stored.
func (t *openSpans) release() { t.n.Add(-1) }
