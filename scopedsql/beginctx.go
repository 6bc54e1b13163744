package scopedsql

import (
	"context"
	"sync"
	"time"
)

// beginCtx is the context BeginTx gets: the scope's values, and its
// cancellation only until BeginTx returns. In a scope with a safety net the
// net fires it (bound.Watcher), without a registration of its own. It replaces
// WithCancelCause(WithoutCancel(ctx)) with one allocation, and it is an
// afterFuncer (context's optional interface), so that database/sql's own
// WithCancel of it registers a callback here instead of allocating a
// children map or starting a goroutine.
//
// Once begin has stopped watching ctx without it firing, the context can
// never be done: the transaction's goroutine (Tx.awaitDone) and lib/pq's
// watcher wait on a channel no one closes until the transaction ends.
type beginCtx struct {
	parent context.Context
	mu     sync.Mutex
	done   chan struct{} // made on first Done
	err    error         // parent.Err() when it fired during the begin
	after  func()        // registered by AfterFunc (database/sql's, once); run when it fires
	more   []func()      // any further registrations
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (b *beginCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (b *beginCtx) Value(key any) any           { return b.parent.Value(key) }

func (b *beginCtx) Done() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done == nil {
		if b.err != nil {
			b.done = closedChan
		} else {
			b.done = make(chan struct{})
		}
	}
	return b.done
}

func (b *beginCtx) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// AfterFunc runs f when the begin is cut short by the scope's context.
// Its stop always reports true: it is called (by context, when the
// transaction's own context ends) only after begin returned, and from
// then on nothing registered here runs.
func (b *beginCtx) AfterFunc(f func()) func() bool {
	b.mu.Lock()
	if b.err != nil {
		b.mu.Unlock()
		go f()
		return stopped
	}
	if b.after == nil {
		b.after = f
	} else {
		b.more = append(b.more, f)
	}
	b.mu.Unlock()
	return stopped
}

func stopped() bool { return true }

// fire is run by context.AfterFunc when the scope's context is done
// while BeginTx runs.
func (b *beginCtx) fire() { b.Fire(b.parent.Err()) }

// Fire ends the begin with err as the context's error: fire's, or the
// scope's safety net's (bound.Target).
func (b *beginCtx) Fire(err error) {
	b.mu.Lock()
	b.err = err
	if b.done == nil {
		b.done = closedChan
	} else {
		close(b.done)
	}
	after, more := b.after, b.more
	b.after, b.more = nil, nil
	b.mu.Unlock()
	if after != nil {
		after()
	}
	for _, f := range more {
		f()
	}
}

// settle drops what AfterFunc registered, once begin knows the context
// will never fire.
func (b *beginCtx) settle() {
	b.mu.Lock()
	b.after, b.more = nil, nil
	b.mu.Unlock()
}
