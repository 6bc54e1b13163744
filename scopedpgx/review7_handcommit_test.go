package scopedpgx

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A handler commits by hand with the request's context, which is
// cancelled while COMMIT runs on the server (a deferred constraint
// trigger makes it slow), and the scope's safety net fires meanwhile. The
// commit's answer is the truth: nil only if the row was saved, an error
// other than ErrCommitUnknown only if it was not. Nothing stays acquired.
// With pgx's default cancellation (the connection is closed: the server
// finishes the COMMIT, and the commit asks it what became of it) and with
// a cancel request (the server cancels the COMMIT's trigger).
func TestReview7HandCommitCancelledDuringCommitSaysTheTruth(t *testing.T) {
	for _, pc := range []struct {
		name string
		pool func(*testing.T) *pgxpool.Pool
	}{
		{"close", func(t *testing.T) *pgxpool.Pool { return newPool(t, 1) }},
		{"cancel request", review7CancelRequestPool},
	} {
		for _, begin := range beginners {
			pool := pc.pool(t)
			table := newTable(t, pool, "review7_hand")
			fn := pgx.Identifier{dbtest.Table("review7_slow")}.Sanitize()
			for _, q := range []string{
				"CREATE FUNCTION " + fn + "() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$",
				"CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON " + table + " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION " + fn + "()",
			} {
				if _, err := pool.Exec(context.Background(), q); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP FUNCTION IF EXISTS "+fn+"() CASCADE") })
			conn, err := pool.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			pid := conn.Conn().PgConn().PID()
			conn.Release()

			txs := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
			base, cancel := context.WithCancel(context.Background())
			ctx, scope := begin.begin(base)
			tx, err := txs.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", 1); err != nil {
				t.Fatal(err)
			}
			go func() {
				awaitActive(t, pid, "commit")
				cancel()
			}()
			cerr := tx.Commit(ctx)
			_ = scope.Remove()
			saved := slices.Equal(ids(t, pool, table), []int{1})
			switch {
			case cerr == nil && !saved:
				t.Errorf("%s, %s: commit said saved, the row is not", pc.name, begin.name)
			case cerr != nil && saved && !errors.Is(cerr, scoped.ErrCommitUnknown):
				t.Errorf("%s, %s: commit said %v, the row is saved", pc.name, begin.name, cerr)
			}
			if n := pool.Stat().AcquiredConns(); n != 0 {
				t.Errorf("%s, %s: %d connections acquired", pc.name, begin.name, n)
			}
			t.Logf("%s, %s: commit %v, saved %v", pc.name, begin.name, cerr, saved)
		}
	}
}
