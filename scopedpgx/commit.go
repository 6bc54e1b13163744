package scopedpgx

import (
	"context"
	"fmt"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/xact"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// commitClaimed commits a transaction the caller has claimed. One that
// never began has nothing to commit and sends nothing.
//
// A COMMIT whose answer is lost (the connection failed after sending it)
// may have committed. When the transaction has written, its id was read
// in the pipeline of the statement that wrote (or, after a call the
// transaction cannot follow, in the same pipeline as COMMIT), and another
// connection of the pool asks the server what became of it.
func (t *tx) commitClaimed(ctx context.Context) error {
	if t.failed != nil {
		return t.failed
	}
	if !t.began || t.c == nil {
		return nil
	}
	c := t.conn()
	verify := t.s.verify && c.PgConn().TxStatus() == 'T'
	var tag pgconn.CommandTag
	var err error
	if readXid, pos := verify && t.xid == "" && t.xidUnsure, t.wantsPosition(); readXid || pos {
		tag, err = t.commitPipelined(ctx, c, readXid, pos)
	} else {
		tag, err = c.Exec(ctx, t.s.commit)
	}
	if err != nil {
		if !c.IsClosed() && c.PgConn().TxStatus() != 'I' {
			closeNow(c)
		}
		// Its slot of the pool is free for the resolution: a pool whose
		// every connection failed in COMMIT at once must not deadlock.
		// pgx finishes closing it in the background.
		t.s.h.giveBackWaiting(t.c, false)
		t.c = nil
		if t.s.replica != nil && outcomeUnknown(err) {
			return nil // a read-only transaction on a replica: nothing to save
		}
		if completionUnknown(err) {
			return fmt.Errorf("scopedpgx: commit: %w: the server does not know whether COMMIT took effect: %w", scoped.ErrCommitUnknown, err)
		}
		if !verify || !outcomeUnknown(err) {
			return err
		}
		if t.xid == "" {
			if t.xidUnsure {
				return fmt.Errorf("scopedpgx: commit: %w: the connection failed during COMMIT before the transaction's id was known: %w", scoped.ErrCommitUnknown, err)
			}
			return err // it wrote nothing: nothing was at stake
		}
		err = t.s.resolve(t.xid, t.xidBegan, err)
		if err == nil && t.reads.cell != nil {
			t.s.positionAfterResolve(t.reads.cell)
		}
		return err
	}
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// commitPipelined sends COMMIT in one pipeline with the read of the
// transaction's id before it if readXid, and the read of the position it
// ends at after it if pos (see WithReadAfter).
func (t *tx) commitPipelined(ctx context.Context, c *pgx.Conn, readXid, pos bool) (pgconn.CommandTag, error) {
	b := &pgx.Batch{}
	if readXid {
		b.Queue(xidSQL)
	}
	b.Queue(t.s.commit)
	if pos {
		b.Queue(positionSQL)
	}
	br := c.SendBatch(ctx, b)
	if readXid {
		var xid, began *string
		if err := br.QueryRow().Scan(&xid, &began); err == nil && xid != nil && began != nil {
			t.xid, t.xidBegan = *xid, *began
		}
	}
	tag, err := br.Exec()
	if pos && err == nil && tag.String() != "ROLLBACK" {
		t.readPosition(br)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// resolve asks the server, on another connection of the pool, whether the
// transaction xid, begun at began and whose COMMIT failed with cause,
// committed, until it knows or the resolve timeout has passed. See
// shared/xact for what an answer proves after a crash.
func (s *txShared) resolve(xid, began string, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.resolveTimeout)
	defer cancel()
	var last error
	for {
		var status *string
		var checkpointed bool
		err := s.pool.QueryRow(ctx, xact.StatusSQL, xid, began).Scan(&status, &checkpointed)
		if err == nil {
			verdict, why := xact.Of(status, checkpointed)
			switch verdict {
			case xact.Committed:
				return nil
			case xact.Aborted:
				return fmt.Errorf("scopedpgx: commit failed and transaction %s was rolled back: %w", xid, cause)
			case xact.Unknown:
				return fmt.Errorf("scopedpgx: commit: %w: the connection failed during COMMIT and %s (transaction %s): %w",
					scoped.ErrCommitUnknown, why, xid, cause)
			}
			last = fmt.Errorf("transaction %s is still in progress", xid)
		} else if xact.Forgotten(err) {
			return fmt.Errorf("scopedpgx: commit failed and the server, restarted, has forgotten transaction %s: nothing was saved: %w", xid, cause)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("scopedpgx: commit: %w: the connection failed during COMMIT and transaction %s's status could not be learned within %v (%v): %w",
				scoped.ErrCommitUnknown, xid, s.cfg.resolveTimeout, last, cause)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
