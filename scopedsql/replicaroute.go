package scopedsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/readafter"
)

// txMaker is [NewTx]'s factory: BEGIN under the unit's options, on a
// replica ([WithReplicas]) or the primary, then the setup; and, when the
// session ends, the read of the position a unit yields ([WithReadAfter]).
type txMaker struct {
	db     *sql.DB
	opts   *sql.TxOptions
	setups []func(context.Context, *sql.Tx) error
	router *router // nil without replicas

	// The transactions whose end is not the default's: on a replica, or
	// yielding a position for a context's WithReadAfter. Counted so that
	// the other sessions' ends cost nothing when there are none. Keyed
	// weakly, and forgotten when the transaction is collected, as well as
	// by close: a scoped.WithClose of the user's replaces close, and the
	// entries would then outlive their transactions.
	special  sync.Map // weak.Pointer[sql.Tx] -> *txState
	nspecial atomic.Int64
}

// txState is what the end of a transaction of special needs.
type txState struct {
	cell    *readafter.Cell // where its position goes; nil: on a replica
	cleanup runtime.Cleanup // forgets it if close does not
}

// router is the replicas of a factory and the turn among them.
type router struct {
	replicas []*replica
	next     atomic.Uint32 // round robin
	maxLag   time.Duration // WithMaxReplicaLag
	wait     time.Duration // WithReplicaWait
}

// replica is one read replica of a factory.
type replica struct {
	db   *sql.DB
	name string // "replica 1", as routes say
	// Why a unit it did not take went to the primary, as routes say.
	lags, down, behind, failed string
	skipUntil                  atomic.Int64           // unix nanoseconds; see ReplicaRecheck
	skipWhy                    atomic.Pointer[string] // lags, down or failed: why it is skipped
}

func newTxMaker(db *sql.DB, txOpts *sql.TxOptions, cfg txConfig) *txMaker {
	f := &txMaker{db: db, opts: cloneTxOptions(txOpts), setups: cfg.setups}
	if len(cfg.replicas) > 0 {
		f.router = &router{maxLag: cfg.maxLag, wait: cfg.replicaWait}
		for i, r := range cfg.replicas {
			name := "replica " + strconv.Itoa(i+1)
			f.router.replicas = append(f.router.replicas, &replica{db: r, name: name,
				lags: name + " lags", down: name + " down", behind: name + " has not replayed the position",
				failed: name + " failed"})
		}
	}
	return f
}

// create is the factory: it begins the unit's transaction where the unit
// may run, and says where with scoped.ReportRoute.
func (f *txMaker) create(ctx context.Context) (*sql.Tx, error) {
	cell := readafter.CellOf(ctx)
	if f.router == nil && cell == nil {
		return f.begin(ctx, f.db)
	}
	var after Position
	if cell != nil {
		after = cell.Load()
	}
	opts, _ := unitTxOptions(ctx, f.opts)
	readOnly, onReplica := routable(opts, after)
	route := "primary"
	switch {
	case f.router == nil:
	case onReplica:
		tx, r, err := f.router.begin(ctx, f, after)
		if tx != nil {
			f.remember(tx, &txState{})
		}
		if tx != nil || err != nil {
			reportRoute(ctx, r)
			return tx, err
		}
		route = r
	case readOnly && after != 0 && !serializable(opts):
		route = "primary (repeatable read with a position)"
	case readOnly:
		route = "primary (serializable)"
	}
	tx, err := f.begin(ctx, f.db)
	if err != nil {
		return nil, err
	}
	if f.router != nil {
		reportRoute(ctx, route)
	}
	if cell != nil && !readOnly {
		f.remember(tx, &txState{cell: cell})
	}
	return tx, nil
}

func (f *txMaker) remember(tx *sql.Tx, st *txState) {
	k := weak.Make(tx)
	st.cleanup = runtime.AddCleanup(tx, func(k weak.Pointer[sql.Tx]) { f.forget(k) }, k)
	f.nspecial.Add(1)
	f.special.Store(k, st)
}

// forget drops the state of the transaction k, if it is still kept.
func (f *txMaker) forget(k weak.Pointer[sql.Tx]) *txState {
	v, ok := f.special.LoadAndDelete(k)
	if !ok {
		return nil
	}
	f.nspecial.Add(-1)
	return v.(*txState)
}

// reportRoute makes the events of the session being created say route.
func reportRoute(ctx context.Context, route string) {
	scoped.ReportRoute(ctx, func() string { return route })
}

// routable reports whether a unit whose transaction options are opts,
// reading after the position after, is read-only, and whether it may run
// on a replica. A SERIALIZABLE transaction cannot run on a hot standby. A
// REPEATABLE READ one takes its snapshot at its first statement, which is
// the check: a snapshot taken as the check began could miss the commit
// the check then saw replayed, so one with a position stays on the
// primary. This is the one place that decides which units a replica may
// take.
func routable(opts *sql.TxOptions, after Position) (readOnly, onReplica bool) {
	if opts == nil || !opts.ReadOnly {
		return false, false
	}
	switch {
	case serializable(opts):
		return true, false
	case opts.Isolation == sql.LevelRepeatableRead, opts.Isolation == sql.LevelSnapshot:
		return true, after == 0
	}
	return true, true
}

func serializable(opts *sql.TxOptions) bool {
	return opts.Isolation == sql.LevelSerializable || opts.Isolation == sql.LevelLinearizable
}

// begin begins a transaction on db under the unit's options and runs the
// setup.
func (f *txMaker) begin(ctx context.Context, db *sql.DB) (*sql.Tx, error) {
	tx, err := beginUnit(ctx, db, f.opts)
	if err != nil {
		return nil, err
	}
	return tx, f.setup(ctx, tx)
}

// setup runs the WithSetup functions on tx, rolling it back if one fails
// or panics: tx is not the scope's yet, and its context never ends, so
// nothing else would give its connection back (the panic goes on).
func (f *txMaker) setup(ctx context.Context, tx *sql.Tx) error {
	if len(f.setups) == 0 {
		return nil
	}
	returned := false
	defer func() {
		if !returned {
			_ = tx.Rollback()
		}
	}()
	for _, s := range f.setups {
		if err := s(ctx, tx); err != nil {
			returned = true
			return abandon(tx, fmt.Errorf("scopedsql: setup: %w", err))
		}
	}
	returned = true
	return nil
}

// Why a replica did not take a unit, besides failing.
var (
	errBehind = errors.New("scopedsql: replica has not replayed the unit's position")
	errLags   = errors.New("scopedsql: replica lags past WithMaxReplicaLag")
)

// begin begins a read-only unit's transaction on the first replica, in
// turn, that is not being skipped and that can take it: it begins, its
// check passes, its setup runs. It returns the transaction and the
// replica's name as the route; or, when no replica took the unit, nil
// and the primary's route, saying why, and the unit goes to the primary.
// An error is the unit's own: its context ended, or its setup refused it
// on a replica that answered.
func (r *router) begin(ctx context.Context, f *txMaker, after Position) (*sql.Tx, string, error) {
	var why []string
	n := uint32(len(r.replicas))
	start := r.next.Add(1)
	for i := range n {
		rep := r.replicas[(start+i)%n]
		if rep.skipped() {
			why = append(why, *rep.skipWhy.Load())
			continue
		}
		tx, err := r.beginOn(ctx, f, rep, after)
		if err == nil {
			return tx, rep.name, nil
		}
		switch {
		case ctx.Err() != nil:
			return nil, "", err
		case errors.Is(err, errBehind):
			why = append(why, rep.behind)
		case errors.Is(err, errLags):
			why = append(why, rep.skip(&rep.lags))
		case connectionLost(err), errors.Is(err, errSilent):
			why = append(why, rep.skip(&rep.down))
		case errors.Is(err, errSetup):
			// The setup's own refusal (no tenant): the primary would refuse too.
			return nil, "", err
		default:
			why = append(why, rep.skip(&rep.failed))
		}
	}
	return nil, "primary (" + strings.Join(why, ", ") + ")", nil
}

// errSetup marks an error of the setup on a replica.
var errSetup = errors.New("scopedsql: setup on a replica")

// beginOn begins the unit on rep: BEGIN and the check (if any), within
// the bound, then the setup.
func (r *router) beginOn(ctx context.Context, f *txMaker, rep *replica, after Position) (*sql.Tx, error) {
	tx, err := r.answer(ctx, f, rep, after)
	if err != nil {
		return nil, err
	}
	if err := f.setup(ctx, tx); err != nil {
		return nil, fmt.Errorf("%w: %w", errSetup, err)
	}
	return tx, nil
}

// replicaAnswer bounds how long a replica may take to begin a unit and
// check it, past WithReplicaWait's wait.
const replicaAnswer = time.Second

// errSilent: the replica did not answer within replicaAnswer.
var errSilent = errors.New("scopedsql: replica did not answer")

// answer runs rep's BEGIN and check on a goroutine of their own, and
// waits for them no longer than replicaAnswer (and the wait) allows, or
// the unit's context: lib/pq honours no context while it opens a
// connection, nor a cancelled statement's on a server that stops
// answering, so a replica that accepts connections and never answers
// held every read-only unit for ever. A transaction begun after the
// caller left is rolled back.
func (r *router) answer(ctx context.Context, f *txMaker, rep *replica, after Position) (*sql.Tx, error) {
	type result struct {
		tx  *sql.Tx
		err error
	}
	done := make(chan result, 1)
	// The begin may outlive this call, while the primary's begin runs with
	// the same factory context, whose one watch (shared/bound) is then
	// the primary's: hidden, the replica's begin watches ctx itself.
	own := struct{ context.Context }{ctx}
	go func() {
		tx, err := r.beginChecked(own, f, rep, after)
		done <- result{tx, err}
	}()
	t := time.NewTimer(replicaAnswer + r.wait)
	defer t.Stop()
	var err error
	select {
	case res := <-done:
		return res.tx, res.err
	case <-ctx.Done():
		err = fmt.Errorf("scopedsql: begin on %s: %w", rep.name, context.Cause(ctx))
	case <-t.C:
		err = fmt.Errorf("%w within %v: %s", errSilent, replicaAnswer+r.wait, rep.name)
	}
	go func() {
		if res := <-done; res.tx != nil {
			_ = res.tx.Rollback()
		}
	}()
	return nil, err
}

// beginChecked runs rep's BEGIN and the check, if any.
func (r *router) beginChecked(ctx context.Context, f *txMaker, rep *replica, after Position) (*sql.Tx, error) {
	tx, err := beginUnit(ctx, rep.db, f.opts)
	if err != nil {
		return nil, err
	}
	if q := r.checkSQL(after); q != "" {
		var replayed, fresh bool
		if err := tx.QueryRowContext(ctx, q).Scan(&replayed, &fresh); err != nil {
			return nil, abandon(tx, fmt.Errorf("scopedsql: check %s: %w", rep.name, err))
		}
		switch {
		case !fresh:
			return nil, abandon(tx, errLags)
		case !replayed:
			return nil, abandon(tx, errBehind)
		}
	}
	return tx, nil
}

func (rep *replica) skipped() bool { return time.Now().UnixNano() < rep.skipUntil.Load() }

// skip skips rep for ReplicaRecheck, why (one of its lags, down, failed)
// naming it in the routes of the units that skip it, as in the route of
// the unit that found it so; it returns *why.
func (rep *replica) skip(why *string) string {
	rep.skipWhy.Store(why)
	rep.skipUntil.Store(time.Now().Add(ReplicaRecheck).UnixNano())
	return *why
}

// checkSQL returns the replica's check for a unit reading after the
// position after, or "" if it has none (no position, no lag bound). Its
// row says whether the replica has replayed after (true if none asked;
// false on a server that is not a standby) and whether it does not lag
// past the bound. With WithReplicaWait, it first waits, polling on the
// server, for the replica to replay after. Its values are written into
// it, not passed as arguments: lib/pq prepares a statement with
// arguments first, a round trip more, while one without is a simple
// query. They are a position and numbers of this package's formatting:
// nothing else reaches the text.
func (r *router) checkSQL(after Position) string {
	if after == 0 && r.maxLag == 0 {
		return ""
	}
	var b strings.Builder
	replayed, fresh := "true", "true"
	if after != 0 {
		lsn := "'" + after.String() + "'::pg_lsn"
		if r.wait > 0 {
			b.WriteString("WITH RECURSIVE wait(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM wait WHERE clock_timestamp() < statement_timestamp() + make_interval(secs => ")
			b.WriteString(seconds(r.wait))
			b.WriteString(") AND coalesce(pg_last_wal_replay_lsn() < " + lsn + ", false) AND pg_sleep(0.001) IS NOT NULL) ")
		}
		replayed = "coalesce(pg_last_wal_replay_lsn() >= " + lsn + ", false)"
	}
	if r.maxLag > 0 {
		fresh = "coalesce(pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() OR now() - pg_last_xact_replay_timestamp() <= make_interval(secs => " +
			seconds(r.maxLag) + "), false)"
	}
	b.WriteString("SELECT " + replayed + ", " + fresh)
	if after != 0 && r.wait > 0 {
		// The row is computed after the aggregate has read the whole wait.
		b.WriteString(" FROM (SELECT count(*) FROM wait) waited")
	}
	return b.String()
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

// positionSQL reads a position at or after the end of every commit the
// primary has made.
const positionSQL = "SELECT pg_current_wal_insert_lsn()::text"

// commit is the sessions' commit: the core's default, but a COMMIT on a
// replica that lost its connection is no error, as the transaction could
// save nothing.
func (f *txMaker) commit(_ context.Context, tx *sql.Tx) error {
	err := tx.Commit()
	if err == nil {
		return nil
	}
	if f.nspecial.Load() != 0 && connectionLost(err) {
		if v, ok := f.special.Load(weak.Make(tx)); ok && v.(*txState).cell == nil {
			return nil
		}
	}
	if connectionLost(err) || completionUnknown(err) {
		return fmt.Errorf("%w: %w", scoped.ErrCommitUnknown, err)
	}
	return err
}

// close is the sessions' close: for a transaction whose unit yields its
// position, it reads the primary's position, now that the unit has
// committed (or rolled back: database/sql does not say which), and
// raises the unit's to it. database/sql cannot read it with the COMMIT:
// it ends a transaction with the driver's Commit, which sends COMMIT
// alone (lib/pq ignores any rows in its answer), and a COMMIT sent as a
// statement of the transaction instead leaves the *sql.Tx open on a
// connection outside a transaction, which lib/pq's Commit and Rollback
// then mark bad, so that database/sql closes it. A failure to read it is
// no error of the unit, whose commit has happened: the position stays.
func (f *txMaker) close(ctx context.Context, tx *sql.Tx) error {
	if f.nspecial.Load() == 0 {
		return nil
	}
	st := f.forget(weak.Make(tx))
	if st == nil {
		return nil
	}
	st.cleanup.Stop()
	cell := st.cell
	if cell == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultResolveTimeout)
	defer cancel()
	var lsn string
	if err := f.db.QueryRowContext(rctx, positionSQL).Scan(&lsn); err != nil {
		return nil
	}
	if p, err := ParsePosition(lsn); err == nil {
		cell.Raise(p)
	}
	return nil
}
