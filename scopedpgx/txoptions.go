package scopedpgx

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/go-scoped/scoped/shared/txopts"
	"github.com/jackc/pgx/v5"
)

// ErrTxOptionsLate is returned by [WithTxOptions] given a context that is
// already inside a unit of work (a scope): the unit's transaction is
// begun with the options its scope began with, so options set later could
// change nothing and would be silently ignored. It is scopedsql's
// ErrTxOptionsLate.
var ErrTxOptionsLate = txopts.ErrLate

// WithTxOptions returns ctx carrying transaction options for the unit of
// work that begins with it: the transactions of [NewTx] begun in
// that unit's scope use opts' IsoLevel, AccessMode and DeferrableMode,
// where set, over their own. Set them before the unit begins, in one line:
//
//	ctx, err := scopedpgx.WithTxOptions(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
//	...
//	err = scoped.Run(ctx, report)
//
// or in a middleware that runs before the one that begins the scope
// (scopedhttp.ReadOnlySafeMethods does so for GET and HEAD; the options
// scopedsql.WithTxOptions sets reach pgx transactions too). Given a context
// already inside a scope it returns ctx unchanged and [ErrTxOptionsLate].
// BeginQuery and CommitQuery belong to NewTx's txOpts: setting them here is an
// error.
func WithTxOptions(ctx context.Context, opts pgx.TxOptions) (context.Context, error) {
	if opts.BeginQuery != "" || opts.CommitQuery != "" {
		return ctx, errors.New("scopedpgx: WithTxOptions: BeginQuery and CommitQuery are those of NewTx's txOpts, not a unit's")
	}
	var o txopts.Options
	switch opts.IsoLevel {
	case "":
	case pgx.Serializable:
		o.Isolation = sql.LevelSerializable
	case pgx.RepeatableRead:
		o.Isolation = sql.LevelRepeatableRead
	case pgx.ReadCommitted:
		o.Isolation = sql.LevelReadCommitted
	case pgx.ReadUncommitted:
		o.Isolation = sql.LevelReadUncommitted
	default:
		return ctx, fmt.Errorf("scopedpgx: WithTxOptions: unknown isolation level %q", opts.IsoLevel)
	}
	switch opts.AccessMode {
	case "":
	case pgx.ReadOnly:
		o.ReadOnly = txopts.On
	case pgx.ReadWrite:
		o.ReadOnly = txopts.Off
	default:
		return ctx, fmt.Errorf("scopedpgx: WithTxOptions: unknown access mode %q", opts.AccessMode)
	}
	switch opts.DeferrableMode {
	case "":
	case pgx.Deferrable:
		o.Deferrable = txopts.On
	case pgx.NotDeferrable:
		o.Deferrable = txopts.Off
	default:
		return ctx, fmt.Errorf("scopedpgx: WithTxOptions: unknown deferrable mode %q", opts.DeferrableMode)
	}
	return txopts.With(ctx, o)
}

// unitTxOptions lays the options ctx carries over base.
func unitTxOptions(ctx context.Context, base pgx.TxOptions) (pgx.TxOptions, error) {
	u, ok := txopts.From(ctx)
	if !ok {
		return base, nil
	}
	switch u.Isolation {
	case sql.LevelDefault:
	case sql.LevelSerializable:
		base.IsoLevel = pgx.Serializable
	case sql.LevelRepeatableRead:
		base.IsoLevel = pgx.RepeatableRead
	case sql.LevelReadCommitted:
		base.IsoLevel = pgx.ReadCommitted
	case sql.LevelReadUncommitted:
		base.IsoLevel = pgx.ReadUncommitted
	default:
		return base, fmt.Errorf("scopedpgx: the unit's isolation level %v is not PostgreSQL's", u.Isolation)
	}
	switch u.ReadOnly {
	case txopts.On:
		base.AccessMode = pgx.ReadOnly
	case txopts.Off:
		base.AccessMode = pgx.ReadWrite
	}
	switch u.Deferrable {
	case txopts.On:
		base.DeferrableMode = pgx.Deferrable
	case txopts.Off:
		base.DeferrableMode = pgx.NotDeferrable
	}
	return base, nil
}

// unitBegin returns the BEGIN of the unit whose context is ctx: the
// factory's own (def, for base) unless the unit set options.
func unitBegin(ctx context.Context, base pgx.TxOptions, def string) (string, error) {
	if _, ok := txopts.From(ctx); !ok {
		return def, nil
	}
	if base.BeginQuery != "" {
		return "", errors.New("scopedpgx: the unit's transaction options (WithTxOptions, scopedhttp.ReadOnlySafeMethods) cannot change the BeginQuery of NewTx's txOpts")
	}
	o, err := unitTxOptions(ctx, base)
	if err != nil {
		return "", err
	}
	return beginSQL(o), nil
}
