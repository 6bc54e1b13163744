package scoped

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
)

// Nesting: a child scope (Begin or Run inside a scope) joins its
// ancestor's session instead of creating one of its own, so that a
// service function behaves the same called from a handler, a job or
// another service function: it never opens a second transaction on a
// second connection, never blocks on its caller's row locks, never
// exhausts the pool by nesting.

// A Nested is a child scope's part of its ancestor's session, as the
// function given to [WithNesting] makes it: the session the child's
// Current returns, and how the child's end releases or undoes its part.
type Nested[S any] struct {
	Session  S
	Release  func(ctx context.Context) error // the child committed: keep its work
	Rollback func(ctx context.Context) error // the child rolled back: undo its work only
}

// ErrNestedBusy is returned by Current in a child scope when another child
// unit of work is already open on the same ancestor transaction (for
// example goroutines of an errgroup, each in its own [Run]): savepoints of
// one transaction nest, they cannot interleave.
var ErrNestedBusy = errors.New("scoped: another child unit of work is open on this transaction (savepoints cannot interleave; run them one after another, or use scoped.Independent)")

// WithNesting sets how a child scope joins its ancestor's session: nest
// gets the ancestor's session (created first if need be) and returns the
// child's part of it. nil makes child scopes share the ancestor's session
// as it is, leaving its end to the ancestor. The default, detected from S:
// savepoints for database/sql-style transactions (*sql.Tx: SAVEPOINT,
// RELEASE SAVEPOINT, ROLLBACK TO SAVEPOINT), the session's own nesting for
// types with a Begin(ctx) (S, error) method (pgx.Tx, whose Begin is a
// savepoint), and sharing for anything else (*sql.Conn, a pool).
func WithNesting[S any](nest func(ctx context.Context, parent S) (Nested[S], error)) Option {
	return optionFunc(func(c *config) {
		c.nest = teardownOverride{set: true, fn: nest, via: fmt.Sprintf("WithNesting[%v]", reflect.TypeFor[S]())}
	})
}

type (
	// sqlTx is a database/sql-style transaction that can run statements.
	sqlTx interface {
		plainTx
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	}
	// beginner is a session whose Begin starts a nested transaction, as
	// pgx.Tx's does (a savepoint).
	beginner[S any] interface {
		Begin(ctx context.Context) (S, error)
	}
)

// savepoints numbers savepoints across the process, so that names never
// repeat within a transaction.
var savepoints atomic.Uint64

// defaultNesting detects, once per ScopedSession, how child scopes join
// sessions of type S. nil: they share them.
func defaultNesting[S any](td teardown[S]) func(context.Context, S) (Nested[S], error) {
	t := reflect.TypeFor[S]()
	switch {
	case t.Implements(reflect.TypeFor[sqlTx]()):
		return func(ctx context.Context, parent S) (Nested[S], error) {
			tx := any(parent).(sqlTx)
			name := fmt.Sprintf("scoped_%d", savepoints.Add(1))
			if _, err := tx.ExecContext(ctx, "SAVEPOINT "+name); err != nil {
				return Nested[S]{}, fmt.Errorf("savepoint: %w", err)
			}
			return Nested[S]{
				Session: parent,
				Release: func(ctx context.Context) error {
					_, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+name)
					return err
				},
				Rollback: func(ctx context.Context) error {
					if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+name); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+name)
					return err
				},
			}, nil
		}
	case t.Implements(reflect.TypeFor[beginner[S]]()) && td.commit != nil && td.rollback != nil:
		return func(ctx context.Context, parent S) (Nested[S], error) {
			child, err := any(parent).(beginner[S]).Begin(ctx)
			if err != nil {
				return Nested[S]{}, err
			}
			return Nested[S]{
				Session:  child,
				Release:  func(ctx context.Context) error { return td.commit(ctx, child) },
				Rollback: func(ctx context.Context) error { return td.rollback(ctx, child) },
			}, nil
		}
	}
	return nil
}

// join makes e, pending in child scope s, the child's part of the
// session of s's parent: it asks the parent for its session (creating it
// there, and so in the outermost scope, if need be), then nests on it or
// shares it.
func (e *entry[S]) join(ctx context.Context, s *Scope) (S, error) {
	r := e.r()
	var zero S
	ps, err := r.Current(s.parent.context())
	if err != nil {
		return zero, err
	}
	if r.nest == nil {
		e.shared = true
		return ps, nil
	}
	pn := s.parent.find(&r.owner)
	if pn == nil { // the parent ended it meanwhile
		return zero, ErrScopeClosed
	}
	if !pn.openChild.CompareAndSwap(false, true) {
		return zero, fmt.Errorf("%w: %s", ErrNestedBusy, r.name)
	}
	if cause := pn.poisoned.Load(); cause != nil {
		// A savepoint of a transaction that is gone (MariaDB rolls the
		// whole of it back on a deadlock) would leave the child's
		// statements to run, and be saved, outside any transaction.
		pn.openChild.Store(false)
		return zero, fmt.Errorf("scoped: %s session of the enclosing unit cannot take a nested unit of work, an earlier one left it unusable: %w", r.name, *cause)
	}
	x := e.extraState()
	x.parentNode = pn
	if px := entryOf[S](pn).extra; px != nil {
		x.route = px.route // a savepoint runs where its transaction does
	}
	if ctx.Err() != nil {
		// Nothing is sent for a unit whose context has ended: the parent's
		// transaction is as it was, and stays usable.
		pn.openChild.Store(false)
		return zero, fmt.Errorf("scoped: nest %s session in its parent's: %w", r.name, context.Cause(ctx))
	}
	nested, err := r.nest(ctx, ps)
	if err != nil {
		pn.openChild.Store(false)
		err = fmt.Errorf("scoped: nest %s session in its parent's: %w", r.name, err)
		e.poison(err) // the SAVEPOINT failed: what its transaction holds is unknown
		return zero, err
	}
	x.nested, x.isNested = nested, true
	return nested.Session, nil
}

// endNested ends a child's part of its ancestor's session: release or
// roll back its savepoint, or nothing for a shared session.
//
// A savepoint whose end fails leaves its transaction in a state no caller
// can see: a RELEASE refused by an aborted PostgreSQL transaction (25P02)
// still holds the failed work, and a ROLLBACK TO that finds no savepoint
// (MariaDB's 1305 after InnoDB rolled the whole transaction back on a
// deadlock) means the caller's earlier work is gone. So a failed RELEASE
// rolls back to the savepoint, which lets the caller go on with its own
// work, and a savepoint that cannot be rolled back to poisons the
// enclosing unit's part (poison). A part poisoned by a unit inside it is
// rolled back to its savepoint rather than released; once that succeeds,
// what went wrong inside is undone and the enclosing units go on. The
// outermost transaction, poisoned, rolls back at its commit, which fails
// with [ErrNotCommitted], saying why.
func (e *entry[S]) endNested(ctx context.Context, commit bool) (err error, commitFailed bool) {
	x := e.extra
	defer x.parentNode.openChild.Store(false)
	defer func() {
		if p := recover(); p != nil {
			err = errors.Join(err, fmt.Errorf("scoped: ending nested %s session panicked: %v", e.r().name, p))
			e.poison(err)
		}
	}()
	n := &x.nested
	if cause := e.poisoned.Load(); commit && cause != nil {
		err = fmt.Errorf("scoped: nested %s session rolled back instead of released, a unit of work inside it left it unusable: %w", e.r().name, *cause)
		if rerr := n.Rollback(ctx); rerr != nil {
			err = errors.Join(err, fmt.Errorf("scoped: roll back nested %s session: %w", e.r().name, rerr))
			e.poison(err)
		}
		return err, true
	}
	if commit {
		commitFailed = true
		if err = n.Release(ctx); err == nil {
			return nil, false
		}
		err = fmt.Errorf("scoped: release nested %s session: %w", e.r().name, err)
		if rerr := n.Rollback(ctx); rerr != nil {
			err = errors.Join(err, fmt.Errorf("scoped: roll back nested %s session after its release failed: %w", e.r().name, rerr))
			e.poison(err)
		}
		return err, true
	}
	if err = n.Rollback(ctx); err != nil {
		err = fmt.Errorf("scoped: roll back nested %s session: %w", e.r().name, err)
		e.poison(err)
	}
	return err, false
}

// poison marks the part of the enclosing unit that e's savepoint was in
// (a savepoint, or the outermost transaction) as one that must not be
// released or committed, because a savepoint operation inside it failed:
// err says why. The enclosing part's end rolls it back, and poisons the
// next one up only if that fails too (endNested).
func (e *entry[S]) poison(err error) {
	e.extra.parentNode.poisoned.CompareAndSwap(nil, &err)
}
