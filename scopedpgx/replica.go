package scopedpgx

import (
	"context"
	"time"

	"github.com/go-scoped/scoped/shared/readafter"
	"github.com/jackc/pgx/v5/pgxpool"
)

// WithReplicas gives [NewTx] read replicas of its pool, streaming replicas
// (hot standbys) of the same primary: a read-only unit of work runs its
// transaction on one of them, in turn; every other unit on the primary.
// A unit is read-only when its transaction options say so, those of NewTx or
// those set on the unit's context. A SERIALIZABLE one stays on the
// primary, as a hot standby cannot run it; so does a REPEATABLE READ one
// (or one begun by a BeginQuery of NewTx's) given a position to read after,
// as its snapshot could predate the check of the position. The check
// assumes the replica's default isolation is READ COMMITTED, as
// PostgreSQL's is.
//
// A replica is never a reason for a unit to fail. One that cannot give a
// connection, whose BEGIN fails, or that lags past the bound of
// [WithMaxReplicaLag], is skipped for [ReplicaRecheck], and the unit runs
// on the primary. A replica that gives no connection within a second (one
// that accepts connections and never answers, say) is down, whatever the
// unit's deadline; pgxpool pings, within that second, a connection that
// has been idle for more than one (its default ShouldPing). A replica
// that freezes while it holds a connection pinged or used less than a
// second before is not bounded so: BEGIN travels with the unit's first
// statement, which only the unit's context may cut short, so the unit
// waits for its deadline, and with none until the connection is lost.
// The pool's connect_timeout bounds what pgxpool goes on
// opening after the second. A unit whose context asks for a position
// ([WithReadAfter]) that the replica has not replayed runs on the primary
// too (unless the replica replays it within [WithReplicaWait]). Lag and
// position are checked by a statement in the pipeline of BEGIN, at no
// extra round trip when the replica is in time; when it is not, the
// replica's ROLLBACK costs one, and pgx prepares the pipeline's
// statements again on that connection's next use. A replica lost while
// it runs the unit's first statement, before its first row, is lost
// before anything was read: the statement is sent again, with BEGIN, on
// the primary. Later, the transaction stays where it began: a replica
// lost in the middle of a unit fails that unit's next statement, as the
// primary's loss would; but its COMMIT, which has nothing to save, does
// not fail. A first statement sent with SendBatch, CopyFrom or the Conn
// escape hatch is not sent again.
//
// The events of a unit's session ([scoped.WithEventHook], and so
// scopedotel's spans) say where its transaction runs, in
// [scoped.Event.Route]: "primary" for a unit that is not read-only,
// "replica N" for a read-only one on the Nth pool of WithReplicas
// (counted from 1: a place, not a host, as a pool's configuration may
// list fallback hosts), and for a read-only one on the primary, why:
// "primary (replica N lags)", "primary (replica N down)" (no connection,
// or one lost), "primary (replica N has not replayed the position)",
// "primary (replica N failed)" (its BEGIN failed otherwise), "primary
// (serializable)" or "primary (repeatable read with a position)". A
// replica being skipped is named with the reason it is skipped for; with
// several skipped, the last one the unit passed over. As BEGIN travels
// with the first statement, the Created event says where the unit is
// sent, and the end event where it ran.
func WithReplicas(pools ...*pgxpool.Pool) Option {
	for _, p := range pools {
		if p == nil {
			panic("scopedpgx: WithReplicas with a nil pool")
		}
	}
	return optionFunc(func(c *config) { c.replicas = append(c.replicas, pools...) })
}

// WithMaxReplicaLag makes a read-only unit skip a replica whose last
// replayed commit is older than d while it has received more to replay
// (pg_last_xact_replay_timestamp; a replica that has replayed all it
// received does not lag, however old its last commit). It panics if d is
// not positive.
func WithMaxReplicaLag(d time.Duration) Option {
	if d <= 0 {
		panic("scopedpgx: WithMaxReplicaLag with a duration that is not positive")
	}
	return optionFunc(func(c *config) { c.maxLag = d })
}

// WithReplicaWait makes a read-only unit whose position ([WithReadAfter])
// a replica has not replayed wait up to d for it, on the replica, before
// it goes to the primary: the wait is part of the replica's BEGIN
// pipeline (the server polls its replay position every millisecond), so
// it costs no round trip, and a unit whose position the replica replays
// within d runs there. It suits a primary that must be spared reads more
// than a client's reads must be quick after its writes. It panics if d is
// not positive.
func WithReplicaWait(d time.Duration) Option {
	if d <= 0 {
		panic("scopedpgx: WithReplicaWait with a duration that is not positive")
	}
	return optionFunc(func(c *config) { c.replicaWait = d })
}

// ReplicaRecheck is how long a replica that failed, or lagged past the
// bound of [WithMaxReplicaLag], is skipped before a unit tries it again.
const ReplicaRecheck = time.Second

// Position is a point in the primary's write-ahead log (an LSN), such as
// the end of a commit. The zero Position is none. It is scopedsql's
// Position too: a position one driver's units yield is the one the
// other's read after.
type Position = readafter.Position

// ErrBadPosition is returned by [ParsePosition] for a string that is not
// an LSN. It is scopedsql.ErrBadPosition.
var ErrBadPosition = readafter.ErrBadPosition

// ParsePosition parses an LSN as [Position.String] and PostgreSQL write
// it.
func ParsePosition(s string) (Position, error) { return readafter.Parse(s) }

// WithReadAfter returns ctx carrying pos for read-your-writes: a
// read-only unit of work begun with ctx (or a context derived from it)
// runs on a replica only if that replica has replayed pos, and on the
// primary otherwise; and every unit begun with it that commits a write
// raises the position to that commit's, read in the COMMIT's pipeline.
// [CommitPosition] returns it, for the client to send back with its next
// request ([ReadYourWrites] does that over HTTP). Set it before the unit
// begins: a unit reads it when its transaction is created. The position
// is the one scopedsql's WithReadAfter carries: units of both drivers
// begun with ctx read after it and raise it.
func WithReadAfter(ctx context.Context, pos Position) context.Context {
	return readafter.With(ctx, pos)
}

// CommitPosition returns the position of ctx's [WithReadAfter], raised by
// the commits of the units begun under it since: a position after every
// write they committed. It returns zero for a context without one.
func CommitPosition(ctx context.Context) Position { return readafter.Of(ctx) }
