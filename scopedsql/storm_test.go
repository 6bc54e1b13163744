package scopedsql_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// Issue 16 item 3: a pooled connection the server closed while it was
// idle costs no request. Between rounds of concurrent requests, every
// backend the pool holds is terminated (pg_terminate_backend, MariaDB's
// KILL); the next round's BEGINs meet dead connections, which lib/pq
// reports as a *net.OpError, io.EOF or SQLSTATE 57P01 (database/sql's own
// retry covers only driver.ErrBadConn). No request may fail at BEGIN.
func TestDeadPooledConnectionsCostNoRequest(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		const workers, rounds = 4, 25
		db.SetMaxIdleConns(workers)
		db.SetMaxOpenConns(workers)
		admin := openDB(t, s)
		table := dbtest.CreateIDTable(t, admin, "scopedsql_storm")
		txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
		kill := "SELECT pg_terminate_backend($1)"
		if s.Name == "mysql" {
			kill = "KILL CONNECTION ?"
		}

		var mu sync.Mutex
		var failedBegin, failedLater []string
		id := int64(0)
		for round := range rounds {
			pids := make([]int64, workers)
			var wg sync.WaitGroup
			for w := range workers {
				id++
				wg.Add(1)
				go func(w int, id int64) {
					defer wg.Done()
					ctx, scope := scoped.Begin(dbtest.Ctx(t))
					defer scope.Remove()
					tx, err := txs.Current(ctx)
					if err != nil {
						mu.Lock()
						failedBegin = append(failedBegin, err.Error())
						mu.Unlock()
						return
					}
					err = tx.QueryRowContext(ctx, s.BackendIDQuery()).Scan(&pids[w])
					if err == nil {
						_, err = tx.ExecContext(ctx, s.InsertID(table), id)
					}
					if err == nil {
						err = scope.Commit()
					}
					if err != nil {
						mu.Lock()
						failedLater = append(failedLater, err.Error())
						mu.Unlock()
					}
				}(w, id)
			}
			wg.Wait()
			if round == rounds-1 {
				break
			}
			for _, pid := range pids {
				if pid == 0 {
					continue
				}
				if _, err := admin.ExecContext(dbtest.Ctx(t), kill, pid); err != nil &&
					!strings.Contains(err.Error(), "Unknown thread") {
					t.Fatalf("kill %d: %v", pid, err)
				}
			}
		}
		if len(failedBegin) > 0 {
			t.Errorf("%d of %d requests failed at BEGIN on a dead pooled connection; first: %s",
				len(failedBegin), workers*rounds, failedBegin[0])
		}
		if len(failedLater) > 0 {
			t.Errorf("%d requests failed after BEGIN; first: %s", len(failedLater), failedLater[0])
		}
		if n := len(dbtest.IDs(t, admin, table)); n != workers*rounds-len(failedBegin)-len(failedLater) {
			t.Errorf("%d rows, want one per successful request", n)
		}
		wantInUse(t, db, 0)
	})
}
