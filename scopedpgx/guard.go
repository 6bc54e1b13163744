package scopedpgx

import (
	"errors"
	"sync"

	"github.com/jackc/pgx/v5"
)

// errBusy is returned by a call on a scoped transaction while another call
// on the same transaction is still running. A pgx connection handles one
// call at a time; without the guard such a call would be a data race.
var errBusy = errors.New("scopedpgx: transaction is busy with another call (a pgx.Tx is not safe for concurrent use)")

// guard serialises the calls on one transaction's connection with the
// end of the transaction.
//
// Why it exists: a scope can end on another goroutine while its handler is
// still inside a query. The safety net of scoped.Begin removes a scope as
// soon as the scope's context is cancelled, and a client that goes away
// cancels the request context exactly while the handler waits on the
// database. Ending
// a pgx transaction then would run ROLLBACK on a connection another
// goroutine is reading from: a data race in pgx that can crash the process
// (pgconn closes the same channel twice). With the guard, the end waits
// for the call in progress to return (it returns promptly, as its context
// is the cancelled one), and every call after the end fails with
// [pgx.ErrTxClosed] without touching a connection that may already serve
// another request.
type guard struct {
	mu     sync.Mutex    // guards the fields below
	inUse  bool          // a call is running on the connection
	ending bool          // that call is the teardown of a savepoint (see claimPart)
	ended  bool          // the transaction was committed or rolled back
	idle   chan struct{} // made by one waiting for inUse to clear; closed when it does
}

// enter claims the connection for one call. It does not wait for another
// call: a second concurrent call is a misuse of pgx.Tx and gets errBusy.
// It waits for the teardown of a savepoint, which the scope's safety net
// may run on its own goroutine while the handler is between two calls
// (reading rows): that is the library's doing, not the handler's.
func (g *guard) enter() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.inUse && g.ending {
		g.waitIdle()
	}
	switch {
	case g.ended:
		return pgx.ErrTxClosed
	case g.inUse:
		return errBusy
	}
	g.inUse = true
	return nil
}

// leave gives the connection back after a call and wakes an end waiting
// for it.
func (g *guard) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inUse, g.ending = false, false
	if g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// claimEnd waits for the call in progress, if any, to return, then claims
// the connection to end the transaction and marks it ended, so that no
// call starts meanwhile or afterwards. It returns false if the transaction
// had already ended. The caller calls leave when done.
func (g *guard) claimEnd() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.inUse {
		g.waitIdle()
	}
	if g.ended {
		return false
	}
	g.ended, g.inUse = true, true
	return true
}

// claimPart is claimEnd for the teardown of a savepoint: it waits for the
// call in progress, then claims the connection without ending the
// transaction; calls made meanwhile wait for it. It returns false if the
// transaction has ended. The caller calls leave when done.
func (g *guard) claimPart() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.inUse {
		g.waitIdle()
	}
	if g.ended {
		return false
	}
	g.inUse, g.ending = true, true
	return true
}

// waitIdle waits, with mu held and released meanwhile, for the call in
// progress to leave.
func (g *guard) waitIdle() {
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	idle := g.idle
	g.mu.Unlock()
	<-idle
	g.mu.Lock()
}
