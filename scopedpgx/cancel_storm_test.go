package scopedpgx

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
)

// TestCancelPgxHTTPStorm: clients that go away at every moment of a
// request (before the first statement, mid-INSERT, while rows are read,
// during a COMMIT made slow by a deferred constraint trigger, after it,
// while the OnCommit hook runs) and request deadlines (scopedhttp.WithTimeout)
// that pass anywhere, over a real HTTP server, with the safety net of
// scopedhttp's scoped.Begin armed on a guarded pgx.Tx. Afterwards every row
// agrees with what the server answered and with the unit hooks that ran,
// and nothing is left: no acquired connection, no live session or scope, no
// transaction open on the server, no goroutine.
func TestCancelPgxHTTPStorm(t *testing.T) {
	const app = "scopedpgx_cancelrev"
	pool := newPool(t, 8, "application_name", app)
	admin := newPool(t, 2)
	table := newTable(t, admin, "cancelrev")
	fn := pgx.Identifier{dbtest.Table("cancelrev_slow")}.Sanitize()
	ctx := dbtest.Ctx(t)
	// A COMMIT that takes a few milliseconds, so that cancellations and
	// deadlines land during it.
	for _, q := range []string{
		"CREATE FUNCTION " + fn + "() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep((NEW.id % 4) * 0.002); RETURN NULL; END $$",
		"CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON " + table + " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION " + fn + "()",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP FUNCTION IF EXISTS "+fn+"() CASCADE") })

	txs := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
	led := &dbtest.CancelLedger{}
	h := cancelApp(txs, table, led)
	// Request id is served by Handlers[id%3]: a third have no deadline, a
	// third one of 2 ms, a third one of 6 ms, which may pass anywhere.
	mw := func(o ...scopedhttp.Option) http.Handler {
		return scopedhttp.Middleware(append(o, scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))...)(h)
	}
	dbtest.CancelStorm{
		Requests: 800, InFlight: 32, Ledger: led, Session: txs,
		Handlers: []http.Handler{mw(), mw(scopedhttp.WithTimeout(2 * time.Millisecond)), mw(scopedhttp.WithTimeout(6 * time.Millisecond))},
		Rows: func(t *testing.T) map[int]int {
			present := map[int]int{}
			for _, id := range ids(t, admin, table) {
				present[id]++
			}
			return present
		},
		InUse: func() int { return int(pool.Stat().AcquiredConns()) },
		OpenTransactions: func(ctx context.Context) (open int, err error) {
			err = admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE application_name = $1 AND state LIKE 'idle in transaction%'`, app).Scan(&open)
			return open, err
		},
		Close:            pool.Reset, // the pool's idle connections and their goroutines go
		IgnoreGoroutines: []goleak.Option{goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck")},
	}.Run(t)
}

// cancelApp is the storm's handler: wait a little, take the transaction,
// register the unit's hooks, INSERT, read rows one by one, answer 201.
func cancelApp(txs *scoped.ScopedSession[pgx.Tx], table string, led *dbtest.CancelLedger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id := dbtest.CancelStormID(ctx)
		rng := rand.New(rand.NewPCG(11, uint64(id)))
		fail := func(err error) {
			if errors.Is(err, errBusy) {
				led.Errorf("id %d: %v", id, err) // a guarded pgx.Tx must never say so
			}
			code := http.StatusInternalServerError
			if ctx.Err() != nil {
				code = http.StatusServiceUnavailable
			}
			http.Error(w, err.Error(), code)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(rng.IntN(3000)) * time.Microsecond):
		}
		tx, err := txs.Current(ctx)
		if err != nil {
			fail(err)
			return
		}
		if err := scoped.OnCommit(ctx, func(context.Context) {
			led.Committed(id)
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond) // a client may leave meanwhile
		}); err != nil {
			fail(err)
			return
		}
		if err := scoped.OnRollback(ctx, func(context.Context) { led.RolledBack(id) }); err != nil {
			fail(err) // answered 5xx: rolled back, OnCommit never runs
			return
		}
		led.Registered(id)
		if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id); err != nil {
			fail(err)
			return
		}
		rows, err := tx.Query(ctx, "SELECT g FROM generate_series(1, 200) g")
		if err != nil {
			fail(err)
			return
		}
		n := 0
		for rows.Next() {
			n++
			if n%50 == 0 {
				time.Sleep(200 * time.Microsecond) // the net may fire between two rows
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			fail(err)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, strconv.Itoa(id))
	})
}
