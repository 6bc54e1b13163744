package scopedpgx

import (
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Option configures the transactions of [Tx].
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	eager          bool
	verify         bool
	resolveTimeout time.Duration
	replicas       []*pgxpool.Pool // WithReplicas
	maxLag         time.Duration   // WithMaxReplicaLag; 0: no bound
	replicaWait    time.Duration   // WithReplicaWait; 0: no wait
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
