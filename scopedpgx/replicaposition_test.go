package scopedpgx

import (
	"context"
	"net"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestCommitPositionAfterLostCommit: a unit whose COMMIT's answer is lost
// (its connection reset while a deferred trigger runs at COMMIT, which
// then completes) learns from the server that it committed, and yields a
// commit position all the same, so its client still reads its write.
func TestCommitPositionAfterLostCommit(t *testing.T) {
	p := newProxy(t, 0)
	pool := p.pool(t, 4)
	direct := newPool(t, 2)
	table := newTable(t, direct, "lostcommitpos")
	fn := pgx.Identifier{dbtest.Table("lostcommitpos_slow")}.Sanitize()
	ctx := dbtest.Ctx(t)
	if _, err := direct.Exec(ctx, `CREATE FUNCTION `+fn+`() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$;
		CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON `+table+`
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION `+fn+`()`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := direct.Exec(context.Background(), "DROP FUNCTION "+fn+"() CASCADE"); err != nil {
			t.Error(err)
		}
	})
	txs := NewTx(pool, pgx.TxOptions{})
	client := WithReadAfter(ctx, 0)
	cut, pid := make(chan struct{}), make(chan uint32, 1)
	go func() {
		defer close(cut)
		awaitCommitSleeping(t, <-pid)
		// Nothing passes until the COMMIT is done: pgx's cancel request
		// for the lost COMMIT must not cancel it.
		p.blackhole.Store(true)
		p.mu.Lock()
		for c := range p.conns {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
		p.mu.Unlock()
		awaitCommitted(t, direct, table)
		p.blackhole.Store(false)
	}()
	err := scoped.Run(client, func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		var backend uint32
		err = tx.QueryRow(ctx, "INSERT INTO "+table+" (id) VALUES (1) RETURNING pg_backend_pid()").Scan(&backend)
		pid <- backend
		return err
	})
	<-cut
	if err != nil {
		t.Fatalf("commit: %v; want it resolved as committed", err)
	}
	if got := ids(t, direct, table); len(got) != 1 {
		t.Fatalf("rows %v, want the one committed", got)
	}
	if CommitPosition(client) == 0 {
		t.Error("no commit position after a commit resolved as committed")
	}
}

// awaitCommitSleeping returns once the backend pid runs COMMIT in the
// slow trigger. It polls pg_stat_activity on a connection of its own; the
// test's bound bounds it.
func awaitCommitSleeping(t testing.TB, pid uint32) {
	ctx := dbtest.Ctx(t)
	c, err := pgx.Connect(ctx, dbtest.Postgres(t).DSN)
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close(context.Background())
	for {
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE pid = $1 AND state = 'active' AND query = 'commit' AND wait_event = 'PgSleep'`, int32(pid)).Scan(&n); err != nil {
			t.Error(err)
			return
		}
		if n > 0 {
			return
		}
	}
}

// awaitCommitted returns once table has a row, as the test's own pool
// sees it.
func awaitCommitted(t testing.TB, pool *pgxpool.Pool, table string) {
	ctx := dbtest.Ctx(t)
	for {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Error(err)
			return
		}
		if n > 0 {
			return
		}
	}
}
