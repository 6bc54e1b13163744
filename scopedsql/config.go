package scopedsql

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/jinzhu/copier"
)

// EngineConfig configures one engine: a *sql.DB and the options of the
// transactions [Engines.Tx] begins on it. It is the Go form of an entry of
// Flask-SQLAlchemy-Lite's SQLALCHEMY_ENGINES with its engine_options.
//
// In [Open], every zero field takes the value of the defaults' field, so
// zero means "not set". The pool fields follow database/sql, where a
// negative value already means "no limit" (or "keep no idle connection"),
// so any setting can still be expressed over a non-zero default.
type EngineConfig struct {
	// Driver is the database/sql driver name, as registered by the driver
	// package ("postgres" for lib/pq, "mysql" for go-sql-driver/mysql).
	Driver string
	// DSN is the data source name given to sql.Open.
	DSN string
	// MaxOpenConns limits open connections; negative: no limit. See
	// [sql.DB.SetMaxOpenConns].
	MaxOpenConns int
	// MaxIdleConns limits idle connections; negative: keep none; zero in
	// the result: database/sql's default (2). See [sql.DB.SetMaxIdleConns].
	MaxIdleConns int
	// ConnMaxLifetime closes connections older than this; negative: never.
	ConnMaxLifetime time.Duration
	// ConnMaxIdleTime closes connections idle for longer than this;
	// negative: never.
	ConnMaxIdleTime time.Duration
	// TxOptions are the options of transactions begun by [Engines.Tx].
	// Unlike the other fields it is taken whole: a non-nil TxOptions
	// replaces the defaults' one rather than being merged with it, since
	// ReadOnly: false could otherwise never override ReadOnly: true.
	TxOptions *sql.TxOptions
}

// overlay returns defaults with every non-zero field of c written over it.
// The result shares no memory with either argument.
//
// copier does the field-by-field work, with two guards against what it does
// on its own: it writes through a non-nil destination pointer, so starting
// from a plain copy of defaults would write c.TxOptions into the caller's
// defaults.TxOptions; and it merges the pointed-to struct field by field,
// which for TxOptions would ignore a false ReadOnly. Hence a deep copy of
// defaults first, and a converter that replaces TxOptions whole.
func overlay(defaults, c EngineConfig) (EngineConfig, error) {
	var out EngineConfig
	conv := []copier.TypeConverter{{
		SrcType: (*sql.TxOptions)(nil),
		DstType: (*sql.TxOptions)(nil),
		Fn: func(src any) (any, error) {
			if o := cloneTxOptions(src.(*sql.TxOptions)); o != nil {
				return o, nil
			}
			return nil, nil
		},
	}}
	if err := copier.CopyWithOption(&out, &defaults, copier.Option{DeepCopy: true, Converters: conv}); err != nil {
		return EngineConfig{}, fmt.Errorf("scopedsql: copy defaults: %w", err)
	}
	if err := copier.CopyWithOption(&out, &c, copier.Option{IgnoreEmpty: true, DeepCopy: true, Converters: conv}); err != nil {
		return EngineConfig{}, fmt.Errorf("scopedsql: overlay engine config: %w", err)
	}
	return out, nil
}

// apply sets c's pool limits on db. Zero leaves database/sql's default.
func (c EngineConfig) apply(db *sql.DB) {
	if c.MaxOpenConns != 0 {
		db.SetMaxOpenConns(c.MaxOpenConns)
	}
	if c.MaxIdleConns != 0 {
		db.SetMaxIdleConns(c.MaxIdleConns)
	}
	if c.ConnMaxLifetime != 0 {
		db.SetConnMaxLifetime(c.ConnMaxLifetime)
	}
	if c.ConnMaxIdleTime != 0 {
		db.SetConnMaxIdleTime(c.ConnMaxIdleTime)
	}
}
