package rpcscope

import (
	"context"
	"math/rand/v2"
	"time"
)

// Pause waits before attempt+1 of a request or call whose unit of work
// failed retryably, for the pause scoped.Run's WithRetry takes: exponential
// from 5 ms, capped at 1 s, with jitter between half and all of it, so that
// transactions that conflicted do not meet again at the same instant. It
// returns false, at once, when ctx ends first. scopedhttp uses it too.
//
// It copies the core's backoff (run.go) rather than sharing it: the core
// exports one name for retries (Scope.RetryRequested), and a pause is no
// part of its contract.
func Pause(ctx context.Context, attempt int) bool {
	d := 5 * time.Millisecond << min(attempt-1, 8)
	d = min(d, time.Second)
	t := time.NewTimer(d/2 + rand.N(d/2+1))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
