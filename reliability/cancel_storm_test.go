package reliability_test

import (
	"context"
	"database/sql"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// TestCancelStorm is the client-cancellation storm the fault storm
// (TestStorm) does not make: each client cancels its request at a random
// moment (before the first statement, mid-INSERT, while rows are read,
// during the COMMIT, which the session's commit makes take a few
// milliseconds, after it, while the unit's OnCommit hook runs), and a
// third of the requests have a 2 ms, another third a 6 ms
// scopedhttp.WithTimeout that passes anywhere. Afterwards every row agrees
// with the status the server wrote, with what the client read, and with
// the unit hook that ran, and nothing is left: no connection in use, no
// live session or scope, no transaction open on the server, no goroutine
// (dbtest.CancelStorm).
func TestCancelStorm(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := openPool(t, s, 8)
		table := createTable(t, p, "cancelrev")
		txs := scoped.New(scopedsql.Tx(p.DB, nil),
			scoped.WithName("cancelrev"),
			scoped.WithTeardownErrorHook(nil),
			scoped.WithCommit(func(ctx context.Context, tx *sql.Tx) error {
				// A commit that takes a while: cancellations and
				// deadlines land during it.
				time.Sleep(time.Duration(dbtest.CancelStormID(ctx)%4) * 1500 * time.Microsecond)
				return tx.Commit()
			}))
		led := &dbtest.CancelLedger{}
		h := reviewApp(s, txs, table, led)
		// Request id is served by Handlers[id%3]: a third have no deadline, a
		// third one of 2 ms, a third one of 6 ms, which may pass anywhere.
		mw := func(o ...scopedhttp.Option) http.Handler {
			return scopedhttp.Middleware(append(o, scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))...)(h)
		}
		dbtest.CancelStorm{
			Requests: 600, InFlight: 32, Ledger: led, Session: txs,
			Handlers:         []http.Handler{mw(), mw(scopedhttp.WithTimeout(2 * time.Millisecond)), mw(scopedhttp.WithTimeout(6 * time.Millisecond))},
			Rows:             func(t *testing.T) map[int]int { return rowIDs(t, p, table) },
			InUse:            func() int { return p.Stats().InUse },
			OpenTransactions: p.openTransactions,
			Close:            func() { _ = p.DB.Close() },
		}.Run(t)
	})
}

// reviewApp is the storm's handler: wait a little, take the transaction,
// register the unit's hooks, INSERT, read rows one by one, answer 201.
func reviewApp(s dbtest.Server, txs *scoped.ScopedSession[*sql.Tx], table string, led *dbtest.CancelLedger) http.Handler {
	rowsQuery := "SELECT g FROM generate_series(1, 200) g"
	if s.Name == "mysql" {
		rowsQuery = "SELECT seq FROM seq_1_to_200"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id := dbtest.CancelStormID(ctx)
		rng := rand.New(rand.NewPCG(11, uint64(id)))
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(rng.IntN(3000)) * time.Microsecond):
		}
		tx, err := txs.Current(ctx)
		if err != nil {
			stormDBError(w, ctx, err)
			return
		}
		if err := scoped.OnCommit(ctx, func(context.Context) {
			led.Committed(id)
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond) // a client may leave meanwhile
		}); err != nil {
			stormDBError(w, ctx, err)
			return
		}
		if err := scoped.OnRollback(ctx, func(context.Context) { led.RolledBack(id) }); err != nil {
			stormDBError(w, ctx, err) // answered 5xx: rolled back, OnCommit never runs
			return
		}
		led.Registered(id)
		if _, err := tx.ExecContext(ctx, sqlFor(s, "INSERT INTO "+table+" (id, kind) VALUES ($1, 'c')"), id); err != nil {
			stormDBError(w, ctx, err)
			return
		}
		rows, err := tx.QueryContext(ctx, rowsQuery)
		if err != nil {
			stormDBError(w, ctx, err)
			return
		}
		n := 0
		for rows.Next() {
			n++
			if n%50 == 0 {
				time.Sleep(200 * time.Microsecond) // the net may fire between two rows
			}
		}
		_ = rows.Close()
		if err := rows.Err(); err != nil {
			stormDBError(w, ctx, err)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, strconv.Itoa(id))
	})
}
