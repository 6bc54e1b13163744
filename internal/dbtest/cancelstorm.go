package dbtest

import (
	"context"
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

	"go.uber.org/goleak"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// StatusRecorder records the status a handler wrote, whether or not the
// client was still there to read it.
type StatusRecorder struct {
	http.ResponseWriter
	Code int // 0 until a status is written
}

func (r *StatusRecorder) WriteHeader(code int) {
	if r.Code == 0 {
		r.Code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *StatusRecorder) Write(b []byte) (int, error) {
	if r.Code == 0 {
		r.Code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *StatusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// CancelLedger is what the server side of a [CancelStorm] saw, per request
// id. Its zero value is ready; its methods are safe for concurrent use.
type CancelLedger struct {
	mu         sync.Mutex
	server     map[int]int  // status written
	registered map[int]bool // OnCommit and OnRollback registered
	committed  map[int]int  // OnCommit runs
	rolledBack map[int]int  // OnRollback runs
	errs       []string     // reported by the storm after its checks
}

func (l *CancelLedger) lock() {
	l.mu.Lock()
	if l.server == nil {
		l.server, l.registered = map[int]int{}, map[int]bool{}
		l.committed, l.rolledBack = map[int]int{}, map[int]int{}
	}
}

// Registered notes that request id registered its OnCommit and OnRollback hooks.
func (l *CancelLedger) Registered(id int) { l.lock(); l.registered[id] = true; l.mu.Unlock() }

// Committed notes a run of request id's OnCommit hook.
func (l *CancelLedger) Committed(id int) { l.lock(); l.committed[id]++; l.mu.Unlock() }

// RolledBack notes a run of request id's OnRollback hook.
func (l *CancelLedger) RolledBack(id int) { l.lock(); l.rolledBack[id]++; l.mu.Unlock() }

// Errorf notes an error the storm reports after its checks.
func (l *CancelLedger) Errorf(format string, args ...any) {
	l.lock()
	l.errs = append(l.errs, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

type cancelStormIDKey struct{}

// CancelStormID returns the id of a [CancelStorm]'s request from its context.
func CancelStormID(ctx context.Context) int {
	id, _ := ctx.Value(cancelStormIDKey{}).(int)
	return id
}

// CancelStorm sends Requests POSTs, InFlight at a time, to an HTTP server
// whose handler inserts the row of the request's id. Request id is served
// by Handlers[id%len(Handlers)] and five in six are cancelled by their
// client at a random moment in their first 30 ms. Afterwards [CancelStorm.Run]
// checks that every row agrees with the status the server wrote, with what
// the client read and with the unit hook that ran (as Ledger noted them),
// and that nothing is left: no connection in use, no live session or scope,
// no transaction open on the server, no goroutine.
type CancelStorm struct {
	Requests, InFlight int
	Handlers           []http.Handler
	Ledger             *CancelLedger
	// Rows returns how many times each id is in the table.
	Rows func(*testing.T) map[int]int
	// InUse returns how many of the pool's connections are in use.
	InUse func() int
	// OpenTransactions counts the pool's transactions open on the server.
	OpenTransactions func(context.Context) (int, error)
	// Session is the storm's ScopedSession: none of its sessions is live after.
	Session interface{ Stats() scoped.Stats }
	// Close closes the pool before the goroutine check, which ignores
	// IgnoreGoroutines and those running when Run began.
	Close            func()
	IgnoreGoroutines []goleak.Option
}

// Run runs the storm and its checks.
func (s CancelStorm) Run(t *testing.T) {
	t.Helper()
	baseScopes := scoped.LiveScopes()
	before := goleak.IgnoreCurrent()
	led := s.Ledger
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.URL.Query().Get("id"))
		rec := &StatusRecorder{ResponseWriter: w}
		defer func() { led.lock(); led.server[id] = rec.Code; led.mu.Unlock() }()
		s.Handlers[id%len(s.Handlers)].ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), cancelStormIDKey{}, id)))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	transport := &http.Transport{MaxIdleConnsPerHost: s.InFlight}
	client := &http.Client{Transport: transport}

	client2xx := map[int]bool{}
	clientNon2xx := map[int]int{}
	var cmu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range s.InFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				rctx, cancel := context.WithTimeout(context.Background(), Bound)
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
	for id := range s.Requests {
		work <- id
	}
	close(work)
	wg.Wait()
	srv.Close() // waits for every handler
	transport.CloseIdleConnections()

	// Hooks may run on a goroutine of their own after the handler.
	testkit.Eventually(t, "every unit's hooks ran", func() bool {
		led.lock()
		defer led.mu.Unlock()
		for id := range led.registered {
			if led.committed[id]+led.rolledBack[id] == 0 {
				return false
			}
		}
		return true
	})

	present := s.Rows(t)
	led.lock()
	defer led.mu.Unlock()
	var saved, lost int
	for id := range s.Requests {
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
	for _, e := range led.errs {
		t.Error(e)
	}
	codes := map[int]int{}
	for _, c := range led.server {
		codes[c]++
	}
	t.Logf("%d requests: %d saved, %d answers lost to the client; server answers %v", s.Requests, saved, lost, codes)

	testkit.Eventually(t, "no connection in use", func() bool { return s.InUse() == 0 })
	if st := s.Session.Stats(); st.Live != 0 {
		t.Errorf("stats %+v: live sessions left", st)
	}
	if n := scoped.LiveScopes() - baseScopes; n != 0 {
		t.Errorf("%d scopes left live", n)
	}
	if n, err := s.OpenTransactions(Ctx(t)); err != nil || n != 0 {
		t.Errorf("%d transactions left open on the server (%v)", n, err)
	}
	s.Close()
	if err := goleak.Find(append([]goleak.Option{before}, s.IgnoreGoroutines...)...); err != nil {
		t.Errorf("goroutines leaked: %v", err)
	}
}
