package scopedpgx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

// cancelRecorder records the status the server wrote for a request,
// whether or not the client was still there to read it.
type cancelRecorder struct {
	http.ResponseWriter
	code int
}

func (r *cancelRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *cancelRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *cancelRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// cancelLedger is what the server side of a cancel storm saw, per id.
type cancelLedger struct {
	mu         sync.Mutex
	server     map[int]int  // status written
	registered map[int]bool // OnCommit and OnRollback registered
	committed  map[int]int  // OnCommit runs
	rolledBack map[int]int  // OnRollback runs
	misuse     []string     // errors a guarded pgx.Tx must never give
}

func newCancelLedger() *cancelLedger {
	return &cancelLedger{server: map[int]int{}, registered: map[int]bool{}, committed: map[int]int{}, rolledBack: map[int]int{}}
}

func (l *cancelLedger) note(m map[int]int, id int) {
	l.mu.Lock()
	m[id]++
	l.mu.Unlock()
}

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
	const (
		requests = 800
		inFlight = 32
		app      = "scopedpgx_cancelrev"
	)
	baseScopes := scoped.LiveScopes()
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

	before := goleak.IgnoreCurrent()
	txs := NewTx(pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
	led := newCancelLedger()
	h := cancelApp(txs, table, led)
	mws := []http.Handler{
		scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(h),
		scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs), scopedhttp.WithTimeout(2*time.Millisecond))(h),
		scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs), scopedhttp.WithTimeout(6*time.Millisecond))(h),
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.URL.Query().Get("id"))
		rec := &cancelRecorder{ResponseWriter: w}
		defer func() {
			led.mu.Lock()
			led.server[id] = rec.code
			led.mu.Unlock()
		}()
		mws[id%len(mws)].ServeHTTP(rec, r)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	transport := &http.Transport{MaxIdleConnsPerHost: inFlight}
	client := &http.Client{Transport: transport}

	client2xx := map[int]bool{}
	clientNon2xx := map[int]int{}
	var cmu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				rctx, cancel := context.WithTimeout(context.Background(), dbtest.Bound)
				rng := rand.New(rand.NewPCG(7, uint64(id)))
				stop := func() bool { return false }
				if id%6 != 0 { // one in six is never cancelled by its client
					stop = time.AfterFunc(time.Duration(rng.IntN(30000))*time.Microsecond, cancel).Stop
				}
				req, _ := http.NewRequestWithContext(rctx, http.MethodPost, srv.URL+"/?id="+strconv.Itoa(id), nil)
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					cmu.Lock()
					switch {
					case err != nil: // the answer was cut short: lost
					case resp.StatusCode >= 200 && resp.StatusCode < 300:
						client2xx[id] = true
					default:
						clientNon2xx[id] = resp.StatusCode
					}
					cmu.Unlock()
				}
				stop()
				cancel()
			}
		}()
	}
	for id := range requests {
		work <- id
	}
	close(work)
	wg.Wait()
	srv.Close() // waits for every handler
	transport.CloseIdleConnections()

	// Hooks may run on a goroutine of their own after the handler.
	testkit.Eventually(t, "every unit's hooks ran", func() bool {
		led.mu.Lock()
		defer led.mu.Unlock()
		for id := range led.registered {
			if led.committed[id]+led.rolledBack[id] == 0 {
				return false
			}
		}
		return true
	})

	present := map[int]bool{}
	for _, id := range ids(t, admin, table) {
		present[id] = true
	}
	led.mu.Lock()
	defer led.mu.Unlock()
	var saved, lost int
	for id := range requests {
		p := present[id]
		if p {
			saved++
		}
		sc := led.server[id]
		switch {
		case client2xx[id] && !p:
			t.Errorf("id %d: the client got 2xx but the row is missing", id)
		case clientNon2xx[id] != 0 && p:
			t.Errorf("id %d: the client got %d but the row is there", id, clientNon2xx[id])
		case sc >= 200 && sc < 300 && !p:
			t.Errorf("id %d: the server answered %d but the row is missing", id, sc)
		case (sc < 200 || sc >= 300) && p:
			t.Errorf("id %d: the server answered %d but the row is there", id, sc)
		}
		if !client2xx[id] && clientNon2xx[id] == 0 {
			lost++
		}
		if led.registered[id] {
			c, r := led.committed[id], led.rolledBack[id]
			switch {
			case c+r != 1:
				t.Errorf("id %d: OnCommit ran %d times, OnRollback %d times, want one of them once", id, c, r)
			case c == 1 && !p:
				t.Errorf("id %d: OnCommit ran but the row is missing", id)
			case r == 1 && p:
				t.Errorf("id %d: OnRollback ran but the row is there", id)
			}
		} else if p {
			t.Errorf("id %d: saved without its hooks registered", id)
		}
	}
	for _, m := range led.misuse {
		t.Error(m)
	}
	codes := map[int]int{}
	for _, c := range led.server {
		codes[c]++
	}
	t.Logf("%d requests: %d saved, %d answers lost to the client; server answers %v", requests, saved, lost, codes)

	testkit.Eventually(t, "no acquired connection", func() bool { return pool.Stat().AcquiredConns() == 0 })
	if st := txs.Stats(); st.Live != 0 {
		t.Errorf("stats %+v: live sessions left", st)
	}
	if n := scoped.LiveScopes() - baseScopes; n != 0 {
		t.Errorf("%d scopes left live", n)
	}
	var open int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE application_name = $1 AND state LIKE 'idle in transaction%'`, app).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Errorf("%d transactions left open on the server", open)
	}
	pool.Reset() // the pool's idle connections and their goroutines go
	if err := goleak.Find(before, goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck")); err != nil {
		t.Errorf("goroutines leaked: %v", err)
	}
}

// cancelApp is the storm's handler: wait a little, take the transaction,
// register the unit's hooks, INSERT, read rows one by one, answer 201.
func cancelApp(txs *scoped.ScopedSession[pgx.Tx], table string, led *cancelLedger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id, _ := strconv.Atoi(r.URL.Query().Get("id"))
		rng := rand.New(rand.NewPCG(11, uint64(id)))
		fail := func(err error) {
			if errors.Is(err, errBusy) {
				led.mu.Lock()
				led.misuse = append(led.misuse, fmt.Sprintf("id %d: %v", id, err))
				led.mu.Unlock()
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
			led.note(led.committed, id)
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond) // a client may leave meanwhile
		}); err != nil {
			fail(err)
			return
		}
		if err := scoped.OnRollback(ctx, func(context.Context) { led.note(led.rolledBack, id) }); err != nil {
			fail(err) // answered 5xx: rolled back, OnCommit never runs
			return
		}
		led.mu.Lock()
		led.registered[id] = true
		led.mu.Unlock()
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
