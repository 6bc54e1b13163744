package scopedpgx

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-scoped/scoped/shared/txopts"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// router is what a factory given replicas ([WithReplicas]) routes by.
type router struct {
	replicas []*replica
	next     atomic.Uint32 // round robin
	ro       bool          // the factory's own transactions are read-only
	serial   bool          // SERIALIZABLE: a hot standby cannot run them
}

// replica is one read replica of a factory.
type replica struct {
	s         *txShared // the transactions begun on it
	primary   *txShared // where its units go when it cannot take them
	maxLag    time.Duration
	skipUntil atomic.Int64 // unix nanoseconds; see ReplicaRecheck
}

// reads is a unit's read-your-writes state, read from its context when
// its transaction is created.
type reads struct {
	after Position   // what a replica must have replayed
	cell  *positions // where its commit's position goes; nil: nowhere
}

// newRouter returns the router of the factory s with the replicas of its
// configuration, or nil if it has none.
func newRouter(s *txShared, opts pgx.TxOptions) *router {
	if len(s.cfg.replicas) == 0 {
		return nil
	}
	r := &router{ro: opts.AccessMode == pgx.ReadOnly, serial: opts.IsoLevel == pgx.Serializable}
	for _, p := range s.cfg.replicas {
		rep := &replica{primary: s, maxLag: s.cfg.maxLag}
		// A read-only transaction has nothing to resolve (see Tx), and
		// its BEGIN is not retried on the replica: the primary takes it.
		rep.s = &txShared{pool: p, h: newHome(p), cfg: s.cfg, begin: s.begin, commit: s.commit, replica: rep}
		r.replicas = append(r.replicas, rep)
	}
	return r
}

// readOnly reports whether the unit whose context is ctx is read-only: by
// the options set on its context, or else by the factory's. This is the
// one place that decides which units a replica may take.
func (r *router) readOnlyUnit(ctx context.Context) bool {
	ro, serial := r.ro, r.serial
	if o, ok := txopts.From(ctx); ok {
		switch o.ReadOnly {
		case txopts.On:
			ro = true
		case txopts.Off:
			ro = false
		}
		if o.Isolation != sql.LevelDefault {
			serial = o.Isolation == sql.LevelSerializable
		}
	}
	return ro && !serial
}

// acquire gives t a connection for the unit whose context is ctx: from a
// replica that is not being skipped if the unit is read-only, from the
// primary otherwise or if no replica can give one.
func (s *txShared) acquire(ctx context.Context, t *tx) (*pgxpool.Conn, error) {
	cell := positionsOf(ctx)
	if cell != nil {
		t.reads = reads{after: Position(cell.p.Load()), cell: cell}
	}
	if r := s.router; r != nil && r.readOnlyUnit(ctx) {
		n := uint32(len(r.replicas))
		start := r.next.Add(1)
		for i := range n {
			rep := r.replicas[(start+i)%n]
			if rep.skipped() {
				continue
			}
			c, err := rep.s.pool.Acquire(ctx)
			if err == nil {
				t.s = rep.s
				return c, nil
			}
			if ctx.Err() != nil {
				return nil, err
			}
			rep.skip()
		}
	}
	return s.pool.Acquire(ctx)
}

func (rep *replica) skipped() bool { return time.Now().UnixNano() < rep.skipUntil.Load() }
func (rep *replica) skip()         { rep.skipUntil.Store(time.Now().Add(ReplicaRecheck).UnixNano()) }

// replicaCheckSQL fails, in a replica's BEGIN pipeline, when the replica
// has not replayed the position $1 (NULL: none asked) or lags past $2
// seconds (NULL: no bound): the statements queued after it do not run,
// and the unit goes to the primary. It fails by a cast of its message to
// int, which needs no function on the server; the message holds the
// replayed position, so that the planner, folding constants, never
// raises it for a unit that is in time.
const replicaCheckSQL = `select case when p and l then 0 else ('` + replicaCheckPrefix + `' ||
	case when p then 'lags' else 'has not replayed ' || $1::text end || ' (replayed: ' ||
	coalesce(pg_last_wal_replay_lsn()::text, 'none, not a standby') || ')')::int end
from (select $1::text is null or pg_last_wal_replay_lsn() >= $1::text::pg_lsn as p,
	$2::float8 is null or pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
	or now() - pg_last_xact_replay_timestamp() <= make_interval(secs => $2::float8) as l) c`

const replicaCheckPrefix = "scopedpgx: replica "

// queueCheck queues the replica's check after BEGIN, on a replica only.
func (t *tx) queueCheck(b *pgx.Batch) {
	rep := t.s.replica
	if rep == nil {
		return
	}
	var after, lag any
	if t.reads.after != 0 {
		after = t.reads.after.String()
	}
	if rep.maxLag > 0 {
		lag = rep.maxLag.Seconds()
	}
	b.Queue(replicaCheckSQL, after, lag)
}

// readCheck reads the result of queueCheck, if it queued one.
func (t *tx) readCheck(br pgx.BatchResults) error {
	if t.s.replica == nil {
		return nil
	}
	_, err := br.Exec()
	return err
}

// beginOn sends BEGIN on c, with the replica's check on a replica.
func (t *tx) beginOn(ctx context.Context, c *pgx.Conn) error {
	if t.s.replica == nil {
		_, err := c.Exec(ctx, t.s.begin)
		return err
	}
	b := &pgx.Batch{}
	b.Queue(t.s.begin)
	t.queueCheck(b)
	br := c.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		err = t.readCheck(br)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// offReplica moves t, whose BEGIN (with the check) failed on a replica
// with err, to the primary: it reports false if t is not on a replica or
// the unit's context has ended. The replica is skipped for a while if it
// failed or lags, not if only this unit's position is ahead of it. An
// error is the primary's: no connection for the unit.
func (t *tx) offReplica(ctx context.Context, err error) (bool, error) {
	rep := t.s.replica
	if rep == nil || ctx.Err() != nil {
		return false, nil
	}
	c := t.conn()
	if connectionLost(ctx, c, err) || lags(err) {
		rep.skip()
	}
	if !c.IsClosed() && c.PgConn().TxStatus() != 'I' {
		// BEGIN ran, the check failed: the transaction is aborted.
		if _, rerr := c.Exec(ctx, "rollback"); rerr != nil {
			closeNow(c)
		}
	}
	t.release()
	t.s = rep.primary
	pc, aerr := t.s.pool.Acquire(ctx)
	if aerr != nil {
		return true, aerr
	}
	t.hold(pc)
	return true, nil
}

// lags reports whether err is the replica check's for a replica that lags
// past the bound.
func lags(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "22P02" &&
		strings.Contains(pgErr.Message, replicaCheckPrefix+"lags")
}

// wantsPosition reports whether t's commit reads the position it ends
// at: the unit's context asked for it ([WithReadAfter]), and t may have
// written, on the primary.
func (t *tx) wantsPosition() bool {
	return t.reads.cell != nil && t.s.replica == nil && (t.xid != "" || t.xidUnsure || !t.s.verify)
}

// positionSQL reads, after COMMIT in its pipeline, a position at or after
// the commit's end.
const positionSQL = "select pg_current_wal_insert_lsn()::text"

// readPosition reads positionSQL's result and raises the unit's position
// to it.
func (t *tx) readPosition(br pgx.BatchResults) {
	var s string
	if err := br.QueryRow().Scan(&s); err != nil {
		return
	}
	if p, err := ParsePosition(s); err == nil {
		t.reads.cell.raise(p)
	}
}
