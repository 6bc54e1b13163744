package testkit

import (
	"runtime"
	"strings"
	"time"
)

// Parked reports whether a goroutine whose stack holds marker (a
// function's full name) is blocked: in a channel operation, a lock or a
// select. A test uses it to let something go on only once another
// goroutine has reached a wait it could not see otherwise.
func Parked(marker string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, marker) {
			continue
		}
		head, _, _ := strings.Cut(g, "\n")
		if !strings.Contains(head, "[running]") && !strings.Contains(head, "[runnable]") {
			return true
		}
	}
	return false
}

// CloseWhenParked closes ch, from a goroutine of its own, once a goroutine
// running marker is parked (see [Parked]), or after [Bound] in any case,
// so that nothing waiting on ch hangs. The function it returns waits for
// that and reports whether the goroutine was seen parked; call it before
// the test ends.
func CloseWhenParked(marker string, ch chan struct{}) (parked func() bool) {
	seen := make(chan bool, 1)
	go func() {
		defer close(ch)
		deadline := time.Now().Add(Bound)
		for !Parked(marker) {
			if time.Now().After(deadline) {
				seen <- false
				return
			}
			time.Sleep(time.Millisecond)
		}
		seen <- true
	}()
	return func() bool { return <-seen }
}
