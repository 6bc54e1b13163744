package scopedpgx

import (
	"context"
	"fmt"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"

	"github.com/jackc/pgx/v5/pgxpool"
)

// An Option configures the transactions of [NewTx], which also takes
// every scoped.Option, so that one list configures the whole session:
//
//	txs := scopedpgx.NewTx(pool, pgx.TxOptions{}, scopedpgx.WithSetup(setTenant), scoped.WithName("orders"))
//
// Option is an empty interface because scoped.Option, whose methods are
// the core's own, could not satisfy any other. A value of any other type
// makes NewTx panic, naming it: it is a mistake in code, found the first
// time it runs.
type Option interface{}

// optionFunc is an option of this package.
type optionFunc func(*config)

// configOf applies this package's options in opts and returns the core's
// ones.
func configOf(opts []Option) (config, []scoped.Option) {
	cfg := defaultConfig()
	var out []scoped.Option
	for _, opt := range opts {
		switch o := opt.(type) {
		case optionFunc:
			if o == nil {
				panic("scopedpgx: NewTx with a nil Option")
			}
			o(&cfg)
		case scoped.Option:
			out = append(out, o)
		case nil:
			panic("scopedpgx: NewTx with a nil Option")
		default:
			panic(fmt.Sprintf("scopedpgx: NewTx does not take an option of type %T", opt))
		}
	}
	return cfg, out
}

type config struct {
	eager          bool
	verify         bool
	resolveTimeout time.Duration
	replicas       []*pgxpool.Pool                                 // WithReplicas
	maxLag         time.Duration                                   // WithMaxReplicaLag; 0: no bound
	replicaWait    time.Duration                                   // WithReplicaWait; 0: no wait
	setups         []func(ctx context.Context, b *pgx.Batch) error // WithSetup
}

func defaultConfig() config {
	return config{verify: true, resolveTimeout: DefaultCommitResolveTimeout}
}

// DefaultCommitResolveTimeout bounds how long a commit whose connection
// failed asks the server whether the transaction committed, unless
// [WithCommitResolveTimeout] says otherwise. It covers a connection reset
// or a backend killed while the server stays up (answered in
// milliseconds) and a server restart of a few seconds; past it the commit
// fails with [scoped.ErrCommitUnknown].
const DefaultCommitResolveTimeout = 5 * time.Second

// WithEagerBegin sends BEGIN when the transaction is handed out, as
// pgx's own Begin does, instead of in the same round trip as the first
// statement: Current then fails if BEGIN fails, and every transaction
// costs a round trip more. For servers or proxies that cannot take BEGIN
// in a pipeline.
func WithEagerBegin() Option { return optionFunc(func(c *config) { c.eager = true }) }

// WithoutVerifiedCommit turns off the resolution of commits whose
// connection failed: such a commit then returns the connection's error,
// as pgx does, although the transaction may have committed. It saves
// reading the transaction's id (no round trip, one small statement in the
// pipelines of a transaction that has not written yet).
func WithoutVerifiedCommit() Option { return optionFunc(func(c *config) { c.verify = false }) }

// WithCommitResolveTimeout sets how long a commit whose connection failed
// asks the server, on another connection of the pool, whether the
// transaction committed ([DefaultCommitResolveTimeout] by default). It
// panics if d is not positive.
func WithCommitResolveTimeout(d time.Duration) Option {
	if d <= 0 {
		panic("scopedpgx: WithCommitResolveTimeout with a duration that is not positive")
	}
	return optionFunc(func(c *config) { c.resolveTimeout = d })
}
