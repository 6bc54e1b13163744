package scopedpgx

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-scoped/scoped/shared/readafter"
	"github.com/go-scoped/scoped/shared/txopts"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// router is what a factory routes its units by: to its replicas
// ([WithReplicas]), if any, the read-only ones.
type router struct {
	replicas []*replica
	next     atomic.Uint32 // round robin
	ro       bool          // the factory's own transactions are read-only
	serial   bool          // SERIALIZABLE: a hot standby cannot run them
	snap     bool          // REPEATABLE READ, or a BeginQuery of the factory's own
}

// replica is one read replica of a factory.
type replica struct {
	s         *txShared // the transactions begun on it
	primary   *txShared // where its units go when it cannot take them
	maxLag    time.Duration
	wait      time.Duration // WithReplicaWait
	skipUntil atomic.Int64  // unix nanoseconds; see ReplicaRecheck
	skipWhy   atomic.Uint32 // the routeKind of the last skip: routeLags or routeDown
	index     int           // in WithReplicas, from 0
	names     [routeKinds]string
}

// reads is a unit's read-your-writes state, read from its context when
// its transaction is created, and where it was routed.
type reads struct {
	after Position        // what a replica must have replayed
	cell  *readafter.Cell // where its commit's position goes; nil: nowhere, or a read-only unit
	route route           // for its events, with replicas (see reportRoute)
}

// newRouter returns the router of the factory s, with the replicas of its
// configuration.
func newRouter(s *txShared, opts pgx.TxOptions) *router {
	r := &router{ro: opts.AccessMode == pgx.ReadOnly, serial: opts.IsoLevel == pgx.Serializable,
		snap: opts.IsoLevel == pgx.RepeatableRead || opts.BeginQuery != ""}
	for i, p := range s.cfg.replicas {
		rep := &replica{primary: s, maxLag: s.cfg.maxLag, wait: s.cfg.replicaWait, index: i, names: routeNames(i + 1)}
		// A read-only transaction has nothing to resolve (see txFactory), and
		// its BEGIN is not retried on the replica: the primary takes it.
		rep.s = &txShared{pool: p, h: newHome(p), cfg: s.cfg, begin: s.begin, commit: s.commit, replica: rep}
		r.replicas = append(r.replicas, rep)
	}
	return r
}

// unit reports whether the unit whose context is ctx, reading after the
// position after, is read-only, by the options set on its context or
// else by the factory's, and whether it may run on a replica (routeReplica):
// it is read-only and its reads can be checked; if not, why not. A SERIALIZABLE transaction
// cannot run on a hot standby. A REPEATABLE READ one takes its snapshot
// at its first statement, which is the check: a snapshot taken as the
// check began could miss the commit the check then saw replayed, so one
// with a position stays on the primary. This is the one place that
// decides which units a replica may take.
func (r *router) unit(ctx context.Context, after Position) (readOnly bool, where routeKind) {
	ro, serial, snap := r.ro, r.serial, r.snap
	if o, ok := txopts.From(ctx); ok {
		switch o.ReadOnly {
		case txopts.On:
			ro = true
		case txopts.Off:
			ro = false
		}
		if o.Isolation != sql.LevelDefault {
			serial = o.Isolation == sql.LevelSerializable || o.Isolation == sql.LevelLinearizable
			snap = o.Isolation == sql.LevelRepeatableRead || o.Isolation == sql.LevelSnapshot
		}
	}
	switch {
	case !ro:
		return false, routePrimary
	case serial:
		return true, routeSerializable
	case snap && after != 0:
		return true, routeSnapshot
	}
	return true, routeReplica
}

// acquire gives t a connection for the unit whose context is ctx: from a
// replica that is not being skipped if the unit may run there, from the
// primary otherwise or if no replica can give one.
func (s *txShared) acquire(ctx context.Context, t *tx) (*pgxpool.Conn, error) {
	r, cell := s.router, readafter.CellOf(ctx)
	if cell == nil && len(r.replicas) == 0 {
		return s.pool.Acquire(ctx)
	}
	var after Position
	if cell != nil {
		after = cell.Load()
	}
	readOnly, where := r.unit(ctx, after)
	t.reads.after = after
	if !readOnly {
		t.reads.cell = cell // a read-only unit has no position to yield
	}
	t.reads.route.set(where, 0)
	if where == routeReplica {
		n := uint32(len(r.replicas))
		start := r.next.Add(1)
		for i := range n {
			rep := r.replicas[(start+i)%n]
			if rep.skipped() {
				// With several replicas skipped, the route names the last.
				t.reads.route.set(routeKind(rep.skipWhy.Load()), rep.index)
				continue
			}
			c, err := rep.conn(ctx)
			if err == nil {
				t.s = rep.s
				t.reads.route.set(routeReplica, rep.index)
				return c, nil
			}
			if ctx.Err() != nil {
				return nil, err
			}
			rep.skip(routeDown)
			t.reads.route.set(routeDown, rep.index)
		}
	}
	return s.pool.Acquire(ctx)
}

// replicaAnswer bounds how long a replica may take to give a unit a
// connection: to open one, or to answer the pool's ping of an idle one.
const replicaAnswer = time.Second

// conn acquires a connection from rep within replicaAnswer: a replica
// that accepts connections and never answers held a unit whose context
// has no deadline for ever, and failed one with a deadline at it, rather
// than sending it to the primary. WithReplicaWait's wait is not part of
// it: the wait is spent in the BEGIN pipeline, after the acquire. pgxpool
// carries on opening a connection in the background once the acquire
// gives up; the pool's connect_timeout, or its Close, ends that.
func (rep *replica) conn(ctx context.Context) (*pgxpool.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, replicaAnswer)
	defer cancel()
	return rep.s.pool.Acquire(ctx)
}

func (rep *replica) skipped() bool { return time.Now().UnixNano() < rep.skipUntil.Load() }

// skip skips rep for ReplicaRecheck, why (routeLags or routeDown) naming
// the route of the units that skip it.
func (rep *replica) skip(why routeKind) {
	rep.skipWhy.Store(uint32(why))
	rep.skipUntil.Store(time.Now().Add(ReplicaRecheck).UnixNano())
}

// replicaCheckSQL fails, in a replica's BEGIN pipeline, when the replica
// has not replayed the position $1 (NULL: none asked) or lags past $2
// seconds (NULL: no bound): the statements queued after it do not run,
// and the unit goes to the primary. Before it checks, it waits up to $3
// seconds (NULL: not at all) for the replica to replay $1, polling every
// millisecond on the server. It fails by a cast of its message to int,
// which needs no function on the server; the message holds the replayed
// position, so that the planner, folding constants, never raises it for
// a unit that is in time.
const replicaCheckSQL = `with recursive wait(i) as (select 0 union all select i + 1 from wait
	where clock_timestamp() < statement_timestamp() + make_interval(secs => $3::float8)
	and coalesce(pg_last_wal_replay_lsn() < $1::text::pg_lsn, false) and pg_sleep(0.001) is not null)
select case when p and l then 0 else ('` + replicaCheckPrefix + `' ||
	case when p then 'lags' else 'has not replayed ' || $1::text end || ' (replayed: ' ||
	coalesce(pg_last_wal_replay_lsn()::text, 'none, not a standby') || ')')::int end
from (select count(*) from wait) waited(n), lateral (select n >= 0 and ($1::text is null or pg_last_wal_replay_lsn() >= $1::text::pg_lsn) as p,
	$2::float8 is null or pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
	or now() - pg_last_xact_replay_timestamp() <= make_interval(secs => $2::float8) as l) c`

const replicaCheckPrefix = "scopedpgx: replica "

// checked reports whether t's BEGIN is followed by the replica's check:
// on a replica, for a unit with a position to read after or with a bound
// on lag. Other units have nothing to check: a replica that fails fails
// their BEGIN or first statement, and they go to the primary all the same.
func (t *tx) checked() bool {
	rep := t.s.replica
	return rep != nil && (t.reads.after != 0 || rep.maxLag > 0)
}

// queueCheck queues the replica's check after BEGIN, if t is checked.
func (t *tx) queueCheck(b *pgx.Batch) {
	if !t.checked() {
		return
	}
	rep := t.s.replica
	var after, lag, wait any
	if t.reads.after != 0 {
		after = t.reads.after.String()
		if rep.wait > 0 {
			wait = rep.wait.Seconds()
		}
	}
	if rep.maxLag > 0 {
		lag = rep.maxLag.Seconds()
	}
	b.Queue(replicaCheckSQL, after, lag, wait)
}

// readCheck reads the result of queueCheck, if it queued one.
func (t *tx) readCheck(br pgx.BatchResults) error {
	if !t.checked() {
		return nil
	}
	_, err := br.Exec()
	return err
}

// beginOn sends BEGIN on c, with the replica's check on a replica.
func (t *tx) beginOn(ctx context.Context, c *pgx.Conn) error {
	if t.s.replica == nil && len(t.setup) == 0 {
		_, err := c.Exec(ctx, t.begin)
		return err
	}
	b := &pgx.Batch{}
	b.Queue(t.begin)
	t.queueCheck(b)
	t.queueSetup(b) // WithSetup's, in the same pipeline
	br := c.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		err = t.readCheck(br)
	}
	if err == nil {
		err = t.readSetup(br)
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
	why := routeFailed
	switch {
	case connectionLost(ctx, c, err):
		why = routeDown
	case checkFailed(err, "lags"):
		why = routeLags
	case checkFailed(err, "has not replayed"):
		why = routeBehind
	}
	if why == routeDown || why == routeLags {
		rep.skip(why)
	}
	t.reads.route.set(why, rep.index)
	if !c.IsClosed() && c.PgConn().TxStatus() != 'I' {
		// BEGIN ran, the check failed: the transaction is aborted.
		if _, rerr := c.Exec(ctx, "rollback"); rerr != nil {
			closeNow(c)
		}
	}
	t.release()
	t.s = rep.primary
	// The pipeline now sent was built for the replica, without the read
	// of the transaction's id: the commit reads it, if it is wanted.
	t.unsure()
	pc, aerr := t.s.pool.Acquire(ctx)
	if aerr != nil {
		return true, aerr
	}
	t.hold(pc)
	return true, nil
}

// checkFailed reports whether err is the replica check's, saying why:
// "lags" (past the bound) or "has not replayed" (the position).
func checkFailed(err error, why string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "22P02" &&
		strings.Contains(pgErr.Message, replicaCheckPrefix+why)
}

// wantsPosition reports whether t's commit reads the position it ends
// at: the unit's context asked for it ([WithReadAfter]), the unit is not
// read-only, and t may have written, on the primary.
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
		t.reads.cell.Raise(p)
	}
}

// failover moves t to the primary when err, from the first statement of
// its first pipeline on a replica, says that the replica's connection was
// lost after BEGIN and the check went through (the replica stopping as
// the statement ran): nothing was read, so the statement is sent again,
// with BEGIN, on the primary. An error is the primary's.
func (t *tx) failover(ctx context.Context, err error) (bool, error) {
	if t.s.replica == nil || !connectionLost(ctx, t.conn(), err) {
		return false, nil
	}
	t.began = false
	moved, merr := t.offReplica(ctx, err)
	if merr != nil {
		merr = t.fail(merr)
	}
	return moved, merr
}

// queryAgain is failover for a query whose rows failed with err before
// the first one: the rows of the query sent again on the primary, or nil
// if t stays where it is.
func (t *tx) queryAgain(ctx context.Context, sql string, args []any, err error) pgx.Rows {
	moved, merr := t.failover(ctx, err)
	switch {
	case !moved:
		return nil
	case merr != nil:
		return &rows{err: merr}
	}
	r, _ := t.query(ctx, sql, args)
	return r
}

// positionAfterResolve raises cell to the primary's position after a
// commit whose answer was lost and which the server then said committed:
// read on another connection, at the cost of one round trip on a commit
// that took several. The position is the primary's write-ahead log's end
// now, after the commit's. If it cannot be read within the resolve
// timeout, the unit's position stays where it was.
func (s *txShared) positionAfterResolve(cell *readafter.Cell) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.resolveTimeout)
	defer cancel()
	var lsn string
	if err := s.pool.QueryRow(ctx, positionSQL).Scan(&lsn); err != nil {
		return
	}
	if p, err := ParsePosition(lsn); err == nil {
		cell.Raise(p)
	}
}
