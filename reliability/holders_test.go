package reliability_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// holders records which live requests hold each session, so that a storm
// catches two live requests given one session (spec §1). A request holds
// its session from its first Current until its handler returns; the map
// keeps the session reachable meanwhile, so its address cannot be freed
// and reused by another request's new session while the entry stands.
type holders[S comparable] struct {
	mu     sync.Mutex
	live   map[S][]int // session -> ids of the live requests holding it
	shared []string    // every sharing seen, for the report
}

// enter records that request id holds s, and returns the function that
// ends the hold. Another live request holding s already is a sharing.
func (h *holders[S]) enter(s S, id int) (leave func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.live == nil {
		h.live = map[S][]int{}
	}
	if others := h.live[s]; len(others) > 0 {
		h.shared = append(h.shared, fmt.Sprintf("request %d got the session that live request(s) %v hold", id, others))
	}
	h.live[s] = append(h.live[s], id)
	return func() { h.leave(s, id) }
}

// leave ends id's hold on s, and only id's: a request that shared s by
// mistake does not hide it from the next one.
func (h *holders[S]) leave(s S, id int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := slices.DeleteFunc(h.live[s], func(x int) bool { return x == id })
	if len(ids) == 0 {
		delete(h.live, s)
	} else {
		h.live[s] = ids
	}
}

// sharings returns every sharing seen so far.
func (h *holders[S]) sharings() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.shared)
}

// TestHoldersCatchesOnlyLiveSharing checks the storm's checker itself: a
// session held by two live requests is caught, by every further holder
// too; one handed on after its holder left is not.
func TestHoldersCatchesOnlyLiveSharing(t *testing.T) {
	var h holders[*int]
	a, b := new(int), new(int)

	leave1 := h.enter(a, 1)
	leave1()
	leave2 := h.enter(a, 2) // a after request 1 ended: reuse, not sharing
	leave3 := h.enter(b, 3)
	if got := h.sharings(); len(got) != 0 {
		t.Fatalf("sharings %q, want none", got)
	}

	leave4 := h.enter(a, 4) // a while request 2 is live
	leave4()                // 4 leaving must not hide 2's hold from 5
	leave5 := h.enter(a, 5)
	got := h.sharings()
	want := []string{
		"request 4 got the session that live request(s) [2] hold",
		"request 5 got the session that live request(s) [2] hold",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("sharings %q, want %q", got, want)
	}
	leave2()
	leave3()
	leave5()
	if len(h.live) != 0 {
		t.Errorf("%d sessions still held after every request left", len(h.live))
	}
}
