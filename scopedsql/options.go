package scopedsql

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/go-scoped/scoped"
)

// An Option configures [Open] or [NewTx]. Each function takes the options
// documented for it; [NewTx] also takes every scoped.Option, so that one
// list configures the whole session:
//
//	txs := scopedsql.NewTx(db, nil, scopedsql.WithSetup(setTenant), scoped.WithName("orders"))
//
// Option is an empty interface because scoped.Option, whose methods are
// the core's own, could not satisfy any other. An option given to a
// function that does not take it (a scoped.Option to Open, [RequireDefault]
// to NewTx, a value of any other type) makes that function panic, naming
// it: it is a mistake in code, found the first time it runs.
type Option interface{}

type openOptions struct {
	requireDefault bool
}

func defaultOpenOptions() openOptions { return openOptions{requireDefault: true} }

// optionFunc is an option of [Open].
type optionFunc func(*openOptions)

// openOptionsOf applies the options of [Open].
func openOptionsOf(opts []Option) openOptions {
	o := defaultOpenOptions()
	for _, opt := range opts {
		f, ok := opt.(optionFunc)
		if !ok || f == nil {
			panic(fmt.Sprintf("scopedsql: Open does not take an option of type %T", opt))
		}
		f(&o)
	}
	return o
}

// RequireDefault says whether [Open] fails when no engine is named
// [DefaultEngine]. It does by default, so that a configuration that
// forgot the engine most code uses fails at start, not at the first query.
// RequireDefault(false) is for applications whose engines all have names
// of their own.
func RequireDefault(required bool) Option {
	return optionFunc(func(o *openOptions) { o.requireDefault = required })
}

// txOption is an option of [NewTx].
type txOption func(*txConfig)

type txConfig struct {
	setups      []func(ctx context.Context, tx *sql.Tx) error
	replicas    []*sql.DB     // WithReplicas
	maxLag      time.Duration // WithMaxReplicaLag
	replicaWait time.Duration // WithReplicaWait
}

// splitTxOptions sorts NewTx's options into its own and the core's.
func splitTxOptions(opts []Option) (txConfig, []scoped.Option) {
	var cfg txConfig
	core := make([]scoped.Option, 0, len(opts))
	for _, opt := range opts {
		switch o := opt.(type) {
		case txOption:
			o(&cfg)
		case scoped.Option:
			core = append(core, o)
		case nil:
			panic("scopedsql: NewTx with a nil option")
		default:
			panic(fmt.Sprintf("scopedsql: NewTx does not take an option of type %T", opt))
		}
	}
	return cfg, core
}
