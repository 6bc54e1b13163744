package scopedsql_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// Issue 10 item 8: requests whose clients go away mid-query, under load.
// The drivers close such a connection (lib/pq after its cancel request,
// go-sql-driver/mysql at once), so the scope's rollback finds it gone
// (driver.ErrBadConn). The server aborted the transaction with the
// session: nothing was left undone, and that is no teardown error. A real
// rollback failure still is (TestRollbackFailureIsReturnedAndReleasesTheConnection).
func TestClientsGoneMidQueryAreNotTeardownErrors(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		db.SetMaxOpenConns(8)
		table := dbtest.CreateIDTable(t, db, "scopedsql_gone")
		var log errorLog
		txs := scoped.New(scopedsql.Tx(db, nil), log.option())
		sleep := "SELECT pg_sleep(0.2)"
		if s.Name == "mysql" {
			sleep = "SELECT SLEEP(0.2)"
		}

		const requests, clients = 200, 16
		var next, cancelled atomic.Int64
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					id := next.Add(1)
					if id > requests {
						return
					}
					reqCtx, cancel := context.WithCancel(dbtest.Ctx(t))
					ctx, scope := scoped.Begin(reqCtx)
					tx, err := txs.Current(ctx)
					if err != nil {
						t.Errorf("request %d: begin: %v", id, err)
						cancel()
						_ = scope.Remove()
						return
					}
					if _, err := tx.ExecContext(ctx, s.InsertID(table), id); err != nil {
						t.Errorf("request %d: insert: %v", id, err)
					}
					// The client goes away while the query runs.
					stop := time.AfterFunc(time.Duration(rand.IntN(20))*time.Millisecond, cancel)
					if _, err := tx.ExecContext(ctx, sleep); err != nil {
						cancelled.Add(1)
					}
					_ = scope.Remove()
					stop.Stop()
					cancel()
				}
			}()
		}
		wg.Wait()

		if c := cancelled.Load(); c < requests/2 {
			t.Fatalf("only %d of %d queries were cancelled: the test did not test", c, requests)
		}
		// Any teardown error here is noise: every one of these requests
		// was only rolled back. lib/pq reports the closed connection as
		// driver.ErrBadConn, go-sql-driver/mysql as the cancelled
		// statement's context error.
		if errs := log.all(); len(errs) > 0 {
			t.Errorf("%d teardown errors for rollbacks of requests whose client went away, want none; first: %v",
				len(errs), errs[0])
		}
		if ids := dbtest.IDs(t, db, table); len(ids) != 0 {
			t.Errorf("%d rows of rolled back requests are in the table", len(ids))
		}
		testkit.Eventually(t, "connections still in use", func() bool { return db.Stats().InUse == 0 })
	})
}
