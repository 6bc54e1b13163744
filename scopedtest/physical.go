package scopedtest

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
)

// ErrBroken is wrapped by every error of an isolated database whose one
// connection, or whose outer transaction, is gone: the connection broke,
// or a statement ended the outer transaction (DDL on MySQL commits
// implicitly). The error says which. Nothing after it is isolated any
// more, so every later call fails with it.
var ErrBroken = errors.New("scopedtest: isolated database unusable")

// errClosed is returned after the test that made the database has ended.
var errClosed = errors.New("scopedtest: IsolatedDB used after its test ended")

// physical is the one real connection behind an isolated database, inside
// its outer transaction. Every handle database/sql opens on the isolated
// *sql.DB shares it; user transactions are savepoints on it.
type physical struct {
	// sem is held for every call on conn. It is a channel so that waiting
	// for it can give up when the caller's context is done. It guards
	// conn, outer, stack, seq, closed and every handle's tx.
	sem chan struct{}

	conn  driver.Conn
	outer driver.Tx
	// stack lists the savepoints of open user transactions, oldest first.
	// SQL savepoints nest: rolling back to one discards those after it.
	stack  []*savepoint
	seq    uint64 // names savepoints uniquely
	closed bool
	// deferrable: the server has checks deferred to COMMIT (PostgreSQL's
	// DEFERRABLE constraints and constraint triggers), which a RELEASE
	// SAVEPOINT does not run; see checkDeferred.
	deferrable bool

	broken atomic.Pointer[error] // set once, by lose
}

// A savepoint is one user transaction.
type savepoint struct {
	name string
	// committed marks a transaction committed while a later one was still
	// open: releasing its savepoint then would release theirs too, so it
	// is released once it is on top of the stack.
	committed bool
}

func newPhysical(conn driver.Conn, outer driver.Tx) *physical {
	p := &physical{sem: make(chan struct{}, 1), conn: conn, outer: outer}
	if postgresDriver(conn) {
		// Nothing is pending yet: SET CONSTRAINTS fails only where the
		// server does not have it (CockroachDB), and then nothing is
		// deferred.
		p.deferrable = true
		if err := p.checkDeferred(); err != nil {
			p.deferrable = false
		}
	}
	return p
}

// postgresDriver reports whether c is a connection of a PostgreSQL
// driver (lib/pq, pgx's stdlib), the servers with checks deferred to
// COMMIT.
func postgresDriver(c driver.Conn) bool {
	t := reflect.TypeOf(c)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	path := t.PkgPath()
	return strings.HasPrefix(path, "github.com/lib/pq") || strings.HasPrefix(path, "github.com/jackc/pgx/")
}

// checkDeferred runs the checks that COMMIT would run at the end of a
// transaction (deferred constraints and constraint triggers), which a
// RELEASE SAVEPOINT does not, and returns their error: a commit of the
// code under test fails as it would in production. They run in a
// savepoint rolled back afterwards, so that the constraints keep their
// modes for the rest of the test and the checks are still pending for
// the outer transaction (PostgreSQL marks them not run again). The
// caller holds the lock.
func (p *physical) checkDeferred() error {
	if !p.deferrable {
		return nil
	}
	const name = "scopedtest_check" // released each time
	if err := p.run("SAVEPOINT " + name); err != nil {
		return err
	}
	cerr := p.check(execDirect(context.Background(), p.conn, "SET CONSTRAINTS ALL IMMEDIATE"))
	if err := p.run("ROLLBACK TO SAVEPOINT " + name); err != nil {
		return errors.Join(cerr, p.lose(err))
	}
	if err := p.run("RELEASE SAVEPOINT " + name); err != nil {
		return errors.Join(cerr, p.lose(err))
	}
	return cerr
}

// lock waits for the connection, or for ctx to be done.
func (p *physical) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case p.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *physical) unlock() { <-p.sem }

// usable reports why the connection cannot be used, or nil. The caller
// holds the lock.
func (p *physical) usable() error {
	if p.closed {
		return errClosed
	}
	return p.brokenErr()
}

func (p *physical) brokenErr() error {
	if e := p.broken.Load(); e != nil {
		return *e
	}
	return nil
}

// lose marks the connection unusable for good and returns the error that
// says so (the first cause, if several calls lose it at once).
func (p *physical) lose(cause error) error {
	err := fmt.Errorf("%w: %w", ErrBroken, cause)
	p.broken.CompareAndSwap(nil, &err)
	return *p.broken.Load()
}

// check passes err on, marking the connection lost if the driver says it
// is broken.
func (p *physical) check(err error) error {
	if errors.Is(err, driver.ErrBadConn) {
		return p.lose(err)
	}
	return err
}

// run executes one savepoint command. The caller holds the lock.
func (p *physical) run(query string) error {
	return p.check(execDirect(context.Background(), p.conn, query))
}

func (p *physical) newName(kind string) string {
	p.seq++
	return fmt.Sprintf("scopedtest_%s_%d", kind, p.seq)
}

// begin opens a user transaction. The caller holds the lock.
func (p *physical) begin() (*savepoint, error) {
	sp := &savepoint{name: p.newName("tx")}
	if err := p.run("SAVEPOINT " + sp.name); err != nil {
		return nil, err
	}
	p.stack = append(p.stack, sp)
	return sp, nil
}

// commit ends sp keeping its work. The caller holds the lock.
func (p *physical) commit(sp *savepoint) error {
	i := slices.Index(p.stack, sp)
	switch {
	case i < 0:
		return errors.New("scopedtest: commit of a transaction that already ended")
	case i < len(p.stack)-1:
		sp.committed = true
		return nil
	}
	err := p.checkDeferred()
	if err == nil {
		err = p.run("RELEASE SAVEPOINT " + sp.name)
	}
	if err != nil {
		// On PostgreSQL a transaction with a failed statement, or whose
		// deferred checks fail, cannot be committed; like COMMIT there,
		// roll it back and say so.
		if rerr := p.rollback(sp); rerr != nil {
			return errors.Join(err, rerr)
		}
		return fmt.Errorf("scopedtest: commit failed, transaction rolled back: %w", err)
	}
	p.stack = p.stack[:i]
	return p.releaseCommitted()
}

// rollback ends sp undoing everything done on the connection since it
// began. Transactions begun after sp and still open lose their work too
// (SQL savepoints cannot skip over them) but stay usable: they get fresh
// savepoints. The caller holds the lock.
func (p *physical) rollback(sp *savepoint) error {
	i := slices.Index(p.stack, sp)
	if i < 0 {
		return errors.New("scopedtest: rollback of a transaction that already ended")
	}
	if err := p.run("ROLLBACK TO SAVEPOINT " + sp.name); err != nil {
		// ROLLBACK TO works even in a failed PostgreSQL transaction; if it
		// fails, the savepoint is gone, and with it the outer transaction.
		return p.lose(err)
	}
	if err := p.run("RELEASE SAVEPOINT " + sp.name); err != nil {
		return p.lose(err)
	}
	above := slices.Clone(p.stack[i+1:])
	p.stack = p.stack[:i]
	for _, a := range above {
		if a.committed {
			continue // nothing of it is left to release
		}
		if err := p.run("SAVEPOINT " + a.name); err != nil {
			return p.lose(err)
		}
		p.stack = append(p.stack, a)
	}
	return p.releaseCommitted()
}

// releaseCommitted releases the savepoints of transactions committed out
// of order that are now on top of the stack. The caller holds the lock.
func (p *physical) releaseCommitted() error {
	for n := len(p.stack); n > 0 && p.stack[n-1].committed; n-- {
		if err := p.run("RELEASE SAVEPOINT " + p.stack[n-1].name); err != nil {
			return p.lose(err)
		}
		p.stack = p.stack[:n-1]
	}
	return nil
}

// autocommit runs f, a statement outside any user transaction, in a
// savepoint of its own, so that it succeeds or fails alone as it would on
// a connection in autocommit mode: on PostgreSQL a failed statement would
// otherwise abort the outer transaction and every statement after it.
// The caller holds the lock.
func (p *physical) autocommit(f func() error) error {
	name := p.newName("stmt")
	if err := p.run("SAVEPOINT " + name); err != nil {
		return err
	}
	ferr := f()
	if ferr == nil {
		ferr = p.checkDeferred() // the statement's implicit COMMIT
	}
	if ferr != nil && ferr != driver.ErrSkip {
		if err := p.run("ROLLBACK TO SAVEPOINT " + name); err != nil {
			return errors.Join(ferr, p.lose(err))
		}
	}
	if err := p.run("RELEASE SAVEPOINT " + name); err != nil {
		return errors.Join(ferr, p.lose(fmt.Errorf(
			"the statement ended the outer transaction (on MySQL, DDL commits implicitly): %w", err)))
	}
	return ferr // as is: database/sql compares driver.ErrSkip by identity
}

// close rolls back the outer transaction and closes the connection, once.
func (p *physical) close() error {
	_ = p.lock(context.Background())
	defer p.unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var rerr error
	if p.brokenErr() == nil {
		rerr = p.outer.Rollback()
	}
	return errors.Join(rerr, p.conn.Close())
}
