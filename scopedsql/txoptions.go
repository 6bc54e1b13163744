package scopedsql

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/go-scoped/scoped/shared/txopts"
)

// ErrTxOptionsLate is returned by [WithTxOptions] and [WithDeferrable]
// given a context that is already inside a unit of work (a scope). The
// unit's transaction is begun with the context its scope began with, so
// options set later could change nothing and would be silently ignored.
// scopedpgx returns the same error.
var ErrTxOptionsLate = txopts.ErrLate

// WithTxOptions returns ctx carrying transaction options for the unit of
// work that begins with it: the transactions of [Tx], [NewTx] and
// scopedpgx's factories begun in that unit's scope use opts over their
// own. ReadOnly false and sql.LevelDefault leave the factory's setting.
// Set them before the unit begins, in one line:
//
//	ctx, err := scopedsql.WithTxOptions(ctx, sql.TxOptions{ReadOnly: true})
//	...
//	err = scoped.Run(ctx, report)
//
// or in a middleware that runs before the one that begins the scope
// (scopedhttp.ReadOnlySafeMethods does so for GET and HEAD). Given a
// context that is already inside a scope it returns ctx unchanged and
// [ErrTxOptionsLate]: the options would reach no transaction. A child
// unit joins its parent's transaction; an independent unit inside a
// request (scoped.Run with scoped.Independent) that needs other options uses a
// ScopedSession made with them.
//
// Options set on a context that already carries some are laid over them,
// field by field.
func WithTxOptions(ctx context.Context, opts sql.TxOptions) (context.Context, error) {
	o := txopts.Options{Isolation: opts.Isolation}
	if opts.ReadOnly {
		o.ReadOnly = txopts.On
	}
	return txopts.With(ctx, o)
}

// WithDeferrable is [WithTxOptions] for PostgreSQL's DEFERRABLE: a
// SERIALIZABLE READ ONLY transaction that waits, at its start, for a
// snapshot that cannot fail with a serialization error (for long reports).
// scopedsql sends SET TRANSACTION DEFERRABLE right after BEGIN (one more
// round trip); other servers refuse it, failing the unit's Current.
func WithDeferrable(ctx context.Context) (context.Context, error) {
	return txopts.With(ctx, txopts.Options{Deferrable: txopts.On})
}

// unitTxOptions lays the options ctx carries over base. deferrable is
// the SET TRANSACTION statement to send after BEGIN, if any.
func unitTxOptions(ctx context.Context, base *sql.TxOptions) (opts *sql.TxOptions, deferrable string) {
	u, ok := txopts.From(ctx)
	if !ok {
		return base, ""
	}
	var o sql.TxOptions
	if base != nil {
		o = *base
	}
	if u.Isolation != sql.LevelDefault {
		o.Isolation = u.Isolation
	}
	switch u.ReadOnly {
	case txopts.On:
		o.ReadOnly = true
	case txopts.Off:
		o.ReadOnly = false
	}
	switch u.Deferrable {
	case txopts.On:
		deferrable = "SET TRANSACTION DEFERRABLE"
	case txopts.Off:
		deferrable = "SET TRANSACTION NOT DEFERRABLE"
	}
	return &o, deferrable
}

// beginUnit begins a transaction with base under the unit's options.
func beginUnit(ctx context.Context, db *sql.DB, base *sql.TxOptions) (*sql.Tx, error) {
	opts, deferrable := unitTxOptions(ctx, base)
	tx, err := begin(ctx, db, opts)
	if err != nil || deferrable == "" {
		return tx, err
	}
	if _, err := tx.ExecContext(ctx, deferrable); err != nil {
		return nil, abandon(tx, fmt.Errorf("scopedsql: begin: %w", err))
	}
	return tx, nil
}
