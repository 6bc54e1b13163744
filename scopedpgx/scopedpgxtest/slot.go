package scopedpgxtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"
)

// The slot: one transaction of DB.Begin at a time. One connection has one
// transaction state; two transactions begun from different places (two
// scopes on two goroutines) would interleave their savepoints on it, and
// the end of one would end the other's. So a second Begin waits for the
// first transaction to end, and its error, if its context ends first,
// says where that transaction was begun: the usual cause is a
// transaction begun inside the open one, on the same goroutine, which can
// never end before it.

// SlotWait bounds how long a transaction waits for the one open on the
// test's connection, even under a context without a deadline
// (t.Context()): the usual waiter, a transaction begun inside the open
// one on the same goroutine, would otherwise hang until the test binary's
// timeout. A variable so that this package's tests can shorten it.
var slotWait = 30 * time.Second

// errSlotWait is the cause of a wait that slotWait ended.
var errSlotWait = errors.New("scopedpgxtest: waited too long")

// acquireSlot waits until no other transaction of Begin is open.
func (d *DB) acquireSlot(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case d.slot <- struct{}{}:
	default:
		d.waiting.Add(1)
		defer d.waiting.Add(-1)
		ctx, cancel := context.WithTimeoutCause(ctx, slotWait, fmt.Errorf("%w (%v)", errSlotWait, slotWait))
		defer cancel()
		select {
		case d.slot <- struct{}{}:
		case <-ctx.Done():
			d.holderMu.Lock()
			holder := d.holder
			d.holderMu.Unlock()
			return fmt.Errorf("scopedpgxtest: a transaction waited for the one open on the test's connection "+
				"(begun at %s) to end; transactions of an isolated database run one at a time: %w",
				holder, context.Cause(ctx))
		case <-d.done:
			return ErrClosed
		}
	}
	d.holderMu.Lock()
	d.holder = caller()
	d.holderMu.Unlock()
	return nil
}

// leave gives a top transaction's slot back, once.
func (t *tx) leave() {
	if t.top && t.left.CompareAndSwap(false, true) {
		<-t.d.slot
	}
}

// caller names the first caller outside this repository's libraries and
// pgx: where the user's code asked for the transaction.
func caller() string {
	var pcs [32]uintptr
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs[:])])
	for {
		f, more := frames.Next()
		lib := strings.HasPrefix(f.Function, "github.com/go-scoped/scoped") && !strings.HasSuffix(f.File, "_test.go") ||
			strings.HasPrefix(f.Function, "github.com/jackc/")
		if !lib {
			return fmt.Sprintf("%s:%d", f.File, f.Line)
		}
		if !more {
			return "an unknown place"
		}
	}
}
