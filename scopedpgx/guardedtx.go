package scopedpgx

import (
	"context"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// txShared is what the transactions of one factory share.
type txShared struct {
	pool          *pgxpool.Pool
	h             *home
	cfg           config
	begin, commit string   // the statements that begin and commit
	verify        bool     // read the transaction's id to resolve a lost commit
	beginRetries  int      // see beginRetries
	router        *router  // which units go to which pool (WithReplicas)
	replica       *replica // the replica these transactions are on; nil: the primary
}

// tx is the pgx.Tx that [Tx] hands out. It holds a connection from the
// pool and begins the transaction in the same pipeline as its first
// statement. Every call goes through the guard; the methods with a lower
// case name are the calls themselves, run with the guard held, which the
// savepoints share.
type tx struct {
	g   *guard
	own guard
	s   *txShared
	c   *pgxpool.Conn // nil once given back, or a lost one could not be replaced
	pc  *pgx.Conn     // c's connection, kept for Conn after the end

	// The fields below are read and written with the guard held.
	began     bool
	failed    error  // why the transaction could not begin, or was lost (see lose); sticky
	xid       string // the transaction's id, once it has one
	xidBegan  string // when it began, as xact.ReadSQL reads it
	xidUnsure bool   // something may have given it an id we have not read
	spNum     int64  // savepoints begun, for their names
	inner     pgx.Tx // pgx's own transaction, made for LargeObjects only
	reads     reads  // read-your-writes (WithReadAfter)
}

var _ pgx.Tx = (*tx)(nil)

func (t *tx) conn() *pgx.Conn { return t.pc }

func (t *tx) hold(c *pgxpool.Conn) {
	t.c = c
	if c != nil {
		t.pc = c.Conn()
	}
}

// usable returns the error every call gets once the transaction could not
// begin.
func (t *tx) usable() error {
	if t.failed != nil {
		return t.failed
	}
	return nil
}

// wantXid reports whether the transaction's id is still to be read:
// commits are verified and the id is not known yet.
func (t *tx) wantXid() bool { return t.s.verify && t.xid == "" }

// piggyXid reports whether a statement should read the transaction's id
// after itself, in its pipeline: the id is wanted and the transaction is
// not aborted. In an aborted transaction PostgreSQL prepares nothing but
// the statements that end it (ROLLBACK, ROLLBACK TO a savepoint): the
// read would fail with 25P02, and take the ROLLBACK TO down with it. The
// next statement after the rollback reads the id.
func (t *tx) piggyXid() bool { return t.wantXid() && t.conn().PgConn().TxStatus() != 'E' }

// unsure records that a call the transaction cannot follow (CopyFrom, a
// batch after the first, the Conn escape hatch) may have given it an id.
func (t *tx) unsure() {
	if t.wantXid() {
		t.xidUnsure = true
	}
}

// batchable reports whether a statement with these arguments can be
// queued in a pgx.Batch. Batches take a QueryRewriter (pgx.NamedArgs) but
// not the per-query execution mode or result formats.
func batchable(args []any) bool {
	if len(args) == 0 {
		return true
	}
	switch args[0].(type) {
	case pgx.QueryExecMode, pgx.QueryResultFormats, pgx.QueryResultFormatsByOID:
		return false
	}
	return true
}

// Begin starts a savepoint transaction on the same connection.
func (t *tx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.g.enter(); err != nil {
		return nil, err
	}
	defer t.g.leave()
	return t.savepoint(ctx)
}

func (t *tx) savepoint(ctx context.Context) (pgx.Tx, error) {
	t.spNum++
	n := t.spNum
	if _, err := t.exec(ctx, "savepoint sp_"+strconv.FormatInt(n, 10), nil); err != nil {
		return nil, err
	}
	return &savepoint{t: t, num: n}, nil
}

// Commit commits. It first waits for a call in progress on another
// goroutine, like the end of the scope does.
func (t *tx) Commit(ctx context.Context) error {
	if !t.g.claimEnd() {
		return pgx.ErrTxClosed
	}
	defer t.g.leave()
	defer t.release()
	return t.commitClaimed(ctx)
}

// Rollback rolls back, as Commit commits.
func (t *tx) Rollback(ctx context.Context) error {
	if !t.g.claimEnd() {
		return pgx.ErrTxClosed
	}
	defer t.g.leave()
	defer t.release()
	return t.rollbackClaimed(ctx)
}

// rollbackClaimed rolls back a transaction the caller has claimed. One that
// never began has nothing to roll back and sends nothing.
func (t *tx) rollbackClaimed(ctx context.Context) error {
	if !t.began || t.c == nil {
		return nil
	}
	c := t.conn()
	if _, err := c.Exec(ctx, "rollback"); err != nil {
		closeNow(c) // its session is in an unknown state, as pgx does
		return err
	}
	return nil
}

// release gives the connection back to the pool, or closes it.
func (t *tx) release() {
	if t.c != nil {
		t.s.h.giveBack(t.c)
		t.c = nil
	}
}

// closeNow closes c at once, as pgx does with a connection whose state is
// unknown.
func closeNow(c *pgx.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = c.Close(ctx)
}

func (t *tx) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.g.enter(); err != nil {
		return 0, err
	}
	defer t.g.leave()
	return t.copyFrom(ctx, table, columns, src)
}

// copyFrom begins the transaction on its own first: pgx's CopyFrom
// describes the table and streams the rows itself.
func (t *tx) copyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.ensureBegun(ctx); err != nil {
		return 0, err
	}
	t.unsure()
	return t.conn().CopyFrom(ctx, table, columns, src)
}

func (t *tx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.g.enter(); err != nil {
		return failedBatch{err}
	}
	defer t.g.leave()
	return &batch{g: t.g, br: t.sendBatch(ctx, b)}
}

func (t *tx) sendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.usable(); err != nil {
		return failedBatch{err}
	}
	if t.began || len(b.QueuedQueries) == 0 {
		t.unsure()
		return t.conn().SendBatch(ctx, b)
	}
	// pgx rewrites the queued queries in place as it sends them; queue
	// copies, so that a retry or a fallback sends the batch as given.
	br, err := t.send(ctx, func(nb *pgx.Batch) {
		for _, q := range b.QueuedQueries {
			cp := *q
			nb.QueuedQueries = append(nb.QueuedQueries, &cp)
		}
	}, false)
	switch {
	case err == errFallback:
		if err := t.ensureBegun(ctx); err != nil {
			return failedBatch{err}
		}
		t.unsure()
		return t.conn().SendBatch(ctx, b)
	case err != nil:
		return failedBatch{err}
	}
	t.unsure()
	return br
}

// LargeObjects is not guarded: pgx builds it around a transaction of its
// own, which this one makes on first use (a round trip). If that fails,
// the LargeObjects returned cannot be used.
func (t *tx) LargeObjects() pgx.LargeObjects {
	if t.g.enter() == nil {
		func() {
			defer t.g.leave()
			if t.inner != nil || t.failed != nil || t.c == nil {
				return
			}
			// pgx's transaction on a connection already in one needs no
			// BEGIN; an empty query stands in for it.
			q := t.s.begin
			if t.began {
				q = ";"
			}
			in, err := t.conn().BeginTx(context.Background(), pgx.TxOptions{BeginQuery: q})
			if err != nil {
				if !t.began {
					t.failed = &beginError{err}
				}
				return
			}
			t.inner, t.began = in, true
			t.unsure()
		}()
	}
	if t.inner == nil {
		return pgx.LargeObjects{}
	}
	return t.inner.LargeObjects()
}

func (t *tx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.g.enter(); err != nil {
		return nil, err
	}
	defer t.g.leave()
	return t.prepare(ctx, name, sql)
}

// prepare needs no transaction: a prepared statement belongs to the
// session. But a Prepare the server refuses aborts pgx's own transaction,
// so then the transaction begins and the Prepare is repeated in it.
func (t *tx) prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	c := t.conn()
	sd, err := c.Prepare(ctx, name, sql)
	if err == nil || t.began || connectionLost(ctx, c, err) || !reusable(c) {
		return sd, err
	}
	if berr := t.ensureBegun(ctx); berr != nil {
		return nil, berr
	}
	return t.conn().Prepare(ctx, name, sql)
}

func (t *tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.g.enter(); err != nil {
		return pgconn.CommandTag{}, err
	}
	defer t.g.leave()
	return t.exec(ctx, sql, args)
}

func (t *tx) exec(ctx context.Context, sql string, args []any) (pgconn.CommandTag, error) {
	if err := t.usable(); err != nil {
		return pgconn.CommandTag{}, err
	}
	// pgx runs a statement without arguments with the simple protocol,
	// which takes several statements separated by semicolons; a batch
	// would not.
	if !batchable(args) || (len(args) == 0 && strings.Contains(sql, ";")) {
		if err := t.ensureBegun(ctx); err != nil {
			return pgconn.CommandTag{}, err
		}
		t.unsure()
		return t.conn().Exec(ctx, sql, args...)
	}
	piggy := t.piggyXid()
	if t.began && !piggy {
		return t.conn().Exec(ctx, sql, args...)
	}
	first := !t.began
	br, err := t.send(ctx, func(b *pgx.Batch) { b.Queue(sql, args...) }, piggy)
	switch {
	case err == errFallback:
		if err := t.ensureBegun(ctx); err != nil {
			return pgconn.CommandTag{}, err
		}
		return t.exec(ctx, sql, args)
	case err != nil:
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	t.finish(br, piggy && err == nil)
	if first && err != nil {
		if moved, merr := t.failover(ctx, err); moved {
			if merr != nil {
				return tag, merr
			}
			return t.exec(ctx, sql, args)
		}
	}
	return tag, err
}

func (t *tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.g.enter(); err != nil {
		return &rows{err: err}, err
	}
	defer t.g.leave()
	r, err := t.query(ctx, sql, args)
	return &rows{g: t.g, r: r}, err
}

func (t *tx) query(ctx context.Context, sql string, args []any) (pgx.Rows, error) {
	if err := t.usable(); err != nil {
		return &rows{err: err}, err
	}
	if !batchable(args) {
		if err := t.ensureBegun(ctx); err != nil {
			return &rows{err: err}, err
		}
		t.unsure()
		return t.conn().Query(ctx, sql, args...)
	}
	piggy := t.piggyXid()
	if t.began && !piggy {
		return t.conn().Query(ctx, sql, args...)
	}
	first := !t.began
	br, err := t.send(ctx, func(b *pgx.Batch) { b.Queue(sql, args...) }, piggy)
	switch {
	case err == errFallback:
		if err := t.ensureBegun(ctx); err != nil {
			return &rows{err: err}, err
		}
		return t.query(ctx, sql, args)
	case err != nil:
		return &rows{err: err}, err
	}
	r, err := br.Query()
	rs := &batchRows{Rows: r, t: t, br: br, piggy: piggy}
	if first && t.s.replica != nil {
		rs.again = func(err error) pgx.Rows { return t.queryAgain(ctx, sql, args, err) }
		if err != nil {
			rs.end()
			if again := rs.again(err); again != nil {
				return again, again.Err()
			}
		}
	}
	return rs, err
}

func (t *tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.g.enter(); err != nil {
		return &row{err: err}
	}
	defer t.g.leave()
	return &row{g: t.g, r: t.queryRow(ctx, sql, args)}
}

func (t *tx) queryRow(ctx context.Context, sql string, args []any) pgx.Row {
	r, _ := t.query(ctx, sql, args)
	return firstRow{r}
}

// Conn is not guarded: it is pgx's escape hatch to the connection itself.
// Statements run on it belong to the transaction, so the transaction
// begins first if it has not (a round trip).
func (t *tx) Conn() *pgx.Conn {
	if t.g.enter() == nil {
		if t.failed == nil && t.c != nil {
			_ = t.ensureBegun(context.Background())
			t.unsure()
		}
		t.g.leave()
	}
	return t.conn()
}
