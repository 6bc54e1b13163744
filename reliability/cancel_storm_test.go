package reliability_test

import (
	"context"
	"database/sql"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// reviewRecorder records the status the server wrote for a request,
// whether or not the client was still there to read it.
type reviewRecorder struct {
	http.ResponseWriter
	code int
}

func (r *reviewRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *reviewRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *reviewRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// reviewLedger is what the server side of a cancel storm saw, per id.
type reviewLedger struct {
	mu         sync.Mutex
	server     map[int]int  // status written
	registered map[int]bool // OnCommit and OnRollback registered
	committed  map[int]int  // OnCommit runs
	rolledBack map[int]int  // OnRollback runs
}

func (l *reviewLedger) note(m map[int]int, id int) {
	l.mu.Lock()
	m[id]++
	l.mu.Unlock()
}

// TestCancelStorm is the client-cancellation storm the fault storm
// (TestStorm) does not make: each client cancels its request at a random
// moment (before the first statement, mid-INSERT, while rows are read,
// during the COMMIT, which the session's commit makes take a few
// milliseconds, after it, while the unit's OnCommit hook runs), and a
// third of the requests have a 2 ms or 6 ms scopedhttp.WithTimeout that
// passes anywhere. Afterwards every row agrees with the status the server
// wrote, with what the client read, and with the unit hook that ran, and
// nothing is left: no connection in use, no live session or scope, no
// transaction open on the server, no goroutine.
func TestCancelStorm(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		const requests, inFlight = 600, 32
		baseScopes := scoped.LiveScopes()
		p := openPool(t, s, 8)
		table := createTable(t, p, "cancelrev")
		before := goleak.IgnoreCurrent()
		txs := scoped.New(scopedsql.Tx(p.DB, nil),
			scoped.WithName("cancelrev"),
			scoped.WithTeardownErrorHook(nil),
			scoped.WithCommit(func(ctx context.Context, tx *sql.Tx) error {
				// A commit that takes a while: cancellations and
				// deadlines land during it.
				id, _ := ctx.Value(stormIDKey{}).(int)
				time.Sleep(time.Duration(id%4) * 1500 * time.Microsecond)
				return tx.Commit()
			}))
		led := &reviewLedger{server: map[int]int{}, registered: map[int]bool{}, committed: map[int]int{}, rolledBack: map[int]int{}}
		h := reviewApp(s, txs, table, led)
		mws := []http.Handler{
			scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(h),
			scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs), scopedhttp.WithTimeout(2*time.Millisecond))(h),
			scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs), scopedhttp.WithTimeout(6*time.Millisecond))(h),
		}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, _ := strconv.Atoi(r.URL.Query().Get("id"))
			rec := &reviewRecorder{ResponseWriter: w}
			defer func() {
				led.mu.Lock()
				led.server[id] = rec.code
				led.mu.Unlock()
			}()
			mws[id%len(mws)].ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), stormIDKey{}, id)))
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
					var timer *time.Timer
					if id%6 != 0 { // one in six is never cancelled by its client
						timer = time.AfterFunc(time.Duration(rng.IntN(30000))*time.Microsecond, cancel)
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
					if timer != nil {
						timer.Stop()
					}
					cancel()
				}
			}()
		}
		for id := range requests {
			work <- id
		}
		close(work)
		wg.Wait()
		srv.Close()
		transport.CloseIdleConnections()

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

		present := rowIDs(t, p, table)
		led.mu.Lock()
		defer led.mu.Unlock()
		var saved, lost int
		for id := range requests {
			p := present[id] > 0
			if p {
				saved++
			}
			sc := led.server[id]
			switch {
			case present[id] > 1:
				t.Errorf("id %d is in the table %d times", id, present[id])
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
		codes := map[int]int{}
		for _, c := range led.server {
			codes[c]++
		}
		t.Logf("%d requests: %d saved, %d answers lost to the client; server answers %v", requests, saved, lost, codes)

		if n := p.drain(); n != 0 {
			t.Errorf("db.Stats().InUse = %d after the storm", n)
		}
		if st := txs.Stats(); st.Live != 0 {
			t.Errorf("stats %+v: live sessions left", st)
		}
		if n := scoped.LiveScopes() - baseScopes; n != 0 {
			t.Errorf("%d scopes left live", n)
		}
		if n, err := p.openTransactions(dbtest.Ctx(t)); err != nil || n != 0 {
			t.Errorf("%d transactions left open on the server (%v)", n, err)
		}
		_ = p.DB.Close()
		if err := goleak.Find(before); err != nil {
			t.Errorf("goroutines leaked: %v", err)
		}
	})
}

// reviewApp is the storm's handler: wait a little, take the transaction,
// register the unit's hooks, INSERT, read rows one by one, answer 201.
func reviewApp(s dbtest.Server, txs *scoped.ScopedSession[*sql.Tx], table string, led *reviewLedger) http.Handler {
	rowsQuery := "SELECT g FROM generate_series(1, 200) g"
	if s.Name == "mysql" {
		rowsQuery = "SELECT seq FROM seq_1_to_200"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id := ctx.Value(stormIDKey{}).(int)
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
			led.note(led.committed, id)
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond) // a client may leave meanwhile
		}); err != nil {
			stormDBError(w, ctx, err)
			return
		}
		if err := scoped.OnRollback(ctx, func(context.Context) { led.note(led.rolledBack, id) }); err != nil {
			stormDBError(w, ctx, err) // answered 5xx: rolled back, OnCommit never runs
			return
		}
		led.mu.Lock()
		led.registered[id] = true
		led.mu.Unlock()
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
