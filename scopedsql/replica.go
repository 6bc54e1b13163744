package scopedsql

import (
	"context"
	"database/sql"
	"time"

	"github.com/go-scoped/scoped/shared/readafter"
)

// WithReplicas gives [NewTx] read replicas of its PostgreSQL database:
// *sql.DB handles of streaming replicas (hot standbys) of the same
// primary, one server each. A read-only unit of work runs its transaction
// on one of them, in turn; every other unit on the primary. A unit is
// read-only when its transaction options say so, those of NewTx or those
// set on the unit's context ([WithTxOptions],
// scopedhttp.ReadOnlySafeMethods). A SERIALIZABLE one stays on the
// primary, as a hot standby cannot run it; so does a REPEATABLE READ one
// given a position to read after ([WithReadAfter]), as its snapshot is
// taken by the check of the position and could miss what the check then
// saw replayed.
//
// A replica is never a reason for a unit to fail. One whose BEGIN or
// check fails (down, restarting), or that lags past the bound of
// [WithMaxReplicaLag], is skipped for [ReplicaRecheck], and the unit runs
// on the primary; so is one that has not begun the unit and answered its
// check within a second (plus [WithReplicaWait]'s wait), such as a host
// that accepts connections and never answers: lib/pq honours no context
// while it connects. The attempt it abandons goes on, on a goroutine of
// its own, until the driver returns; bound that with connect_timeout in
// the replica's DSN. A unit whose context asks for a position that the
// replica has not replayed runs on the primary too (unless the replica
// replays it within [WithReplicaWait]). Once begun, a transaction stays
// where it began: a replica lost in the middle of a unit fails that
// unit's next statement, as the primary's loss would.
//
// Cost: a unit given no position, on a NewTx without a lag bound, costs on
// the replica what it would on the primary. The check of a position or of
// the lag is one statement after BEGIN: one round trip more, which
// scopedpgx saves by sending it with BEGIN. database/sql cannot: it sends
// BEGIN itself, through the driver (lib/pq's BeginTx sends "BEGIN" with
// the mode and nothing else, and refuses a connection already in a
// transaction, so a BEGIN sent with the check as one simple query could
// not become a *sql.Tx). A replica that has not replayed the position, or
// lags, costs one more (its ROLLBACK) before the primary's BEGIN. The
// routing is for PostgreSQL only: the check uses its functions.
//
// The route each session took is reported to [scoped.WithEventHook]'s
// hook in Event.Route: "primary", "replica 2", or the primary with why,
// such as "primary (replica 1 lags)".
func WithReplicas(dbs ...*sql.DB) Option {
	for _, db := range dbs {
		if db == nil {
			panic("scopedsql: WithReplicas with a nil *sql.DB")
		}
	}
	return txOption(func(c *txConfig) { c.replicas = append(c.replicas, dbs...) })
}

// WithMaxReplicaLag makes a read-only unit skip a replica whose last
// replayed commit is older than d while it has received more to replay
// (pg_last_xact_replay_timestamp; a replica that has replayed all it
// received does not lag, however old its last commit). Every unit on a
// replica then pays the check's round trip (see [WithReplicas]). It
// panics if d is not positive.
func WithMaxReplicaLag(d time.Duration) Option {
	if d <= 0 {
		panic("scopedsql: WithMaxReplicaLag with a duration that is not positive")
	}
	return txOption(func(c *txConfig) { c.maxLag = d })
}

// WithReplicaWait makes a read-only unit whose position ([WithReadAfter])
// a replica has not replayed wait up to d for it, on the replica, before
// it goes to the primary: the check polls the replay position on the
// server every millisecond, within its own round trip, and a unit whose
// position the replica replays within d runs there. It suits a primary
// that must be spared reads more than a client's reads must be quick after
// its writes. It panics if d is not positive.
func WithReplicaWait(d time.Duration) Option {
	if d <= 0 {
		panic("scopedsql: WithReplicaWait with a duration that is not positive")
	}
	return txOption(func(c *txConfig) { c.replicaWait = d })
}

// ReplicaRecheck is how long a replica that failed, or lagged past the
// bound of [WithMaxReplicaLag], is skipped before a unit tries it again.
const ReplicaRecheck = time.Second

// Position is a point in the primary's write-ahead log (an LSN), such as
// the end of a commit. The zero Position is none. It is scopedpgx's
// Position too: a position one driver's units yield is the one the
// other's read after.
type Position = readafter.Position

// ErrBadPosition is returned by [ParsePosition] for a string that is not
// an LSN. It is scopedpgx.ErrBadPosition.
var ErrBadPosition = readafter.ErrBadPosition

// ParsePosition parses an LSN as [Position.String] and PostgreSQL write
// it.
func ParsePosition(s string) (Position, error) { return readafter.Parse(s) }

// WithReadAfter returns ctx carrying pos for read-your-writes: a
// read-only unit of work begun with ctx (or a context derived from it)
// runs on a replica only if that replica has replayed pos, and on the
// primary otherwise; and every unit begun with it that is not read-only
// raises the position, when it ends, to the primary's at that moment,
// which is after its commit. [CommitPosition] returns it, for the client
// to send back with its next request ([ReadYourWrites] does that over
// HTTP). Set it before the unit begins: a unit reads it when its
// transaction is begun. The position is the one scopedpgx's WithReadAfter
// carries: units of both drivers begun with ctx read after it and raise
// it.
//
// Reading the position costs a round trip on the primary when the unit
// ends (database/sql commits with the driver's COMMIT, which reads no
// result; see NewTx), paid only by the units begun with such a context. If
// the primary does not answer it within [DefaultResolveTimeout], the
// position stays where it was.
func WithReadAfter(ctx context.Context, pos Position) context.Context {
	return readafter.With(ctx, pos)
}

// CommitPosition returns the position of ctx's [WithReadAfter], raised by
// the units begun under it since: a position after every write they
// committed. It returns zero for a context without one.
func CommitPosition(ctx context.Context) Position { return readafter.Of(ctx) }
