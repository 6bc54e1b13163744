package reliability_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// What a storm request does; the client picks it, the handler obeys.
type stormKind int

const (
	kCommit     stormKind = iota // insert, 201: committed
	kRead                        // no session at all, 200
	k4xx                         // insert, then 400/404/409/422: rolled back
	k5xx                         // insert, then 500/502/503: rolled back
	kPanic                       // insert, then panic; a recoverer outside answers 500
	kAbort                       // insert, then panic(http.ErrAbortHandler): the connection is dropped
	kTimeout                     // insert, then outlive the request deadline; 503
	kAbandon                     // insert, then the client goes away; the handler answers to no one
	kCommitFail                  // insert, 201, but the commit fails (injected): 500
	stormKinds
)

var stormKindNames = [...]string{"commit", "read", "4xx", "5xx", "panic", "abort", "timeout", "abandon", "commit-fail"}

func (k stormKind) String() string { return stormKindNames[k] }

// stormWeights is the mix of a storm, in percent.
var stormWeights = [stormKinds]int{
	kCommit: 52, kRead: 5, k4xx: 8, k5xx: 6, kPanic: 4, kAbort: 2, kTimeout: 6, kAbandon: 6, kCommitFail: 11,
}

const (
	stormInFlight = 64
	stormPool     = 10
	stormDeadline = 40 * time.Millisecond // the request deadline of kTimeout requests
	stormBudget   = 3 * time.Minute       // the bound of a whole storm: a broken run fails, it does not hang
)

var errInjectedCommit = errors.New("storm: injected commit failure")

type stormIDKey struct{}

// stormFigures are what a storm reports.
type stormFigures struct {
	Test                 string         `json:"test"`
	Server               string         `json:"server"`
	Seed                 uint64         `json:"seed"`
	Requests             int            `json:"requests"`
	InFlight             int            `json:"in_flight"`
	Pool                 int            `json:"pool"`
	ByKind               map[string]int `json:"by_kind"`
	Answers              map[string]int `json:"answers"`
	FaultsInjected       map[string]int `json:"faults_injected"`
	ConnectionsKilled    int            `json:"connections_killed"`
	FailedByKill         int            `json:"failed_by_kill"`
	ConnectionsOpened    int            `json:"connections_opened"`
	Answered2xx          int            `json:"answered_2xx"`
	RowsPresent          int            `json:"rows_present"`
	LostWrites           int            `json:"lost_writes"`
	PhantomWrites        int            `json:"phantom_writes"`
	DuplicateRows        int            `json:"duplicate_rows"`
	CrossScopeSessions   int            `json:"cross_scope_sessions"`
	InUseAfterDrain      int            `json:"in_use_after_drain"`
	OpenTransactions     int            `json:"open_transactions"`
	LeakedConnections    int            `json:"leaked_connections"`
	LiveScopes           int64          `json:"live_scopes"`
	LiveSessions         int64          `json:"live_sessions"`
	SessionStats         scoped.Stats   `json:"session_stats"`
	ServesAfterwards     bool           `json:"serves_afterwards"`
	LeakedGoroutines     int            `json:"leaked_goroutines"`
	DurationMilliseconds int64          `json:"duration_ms"`
}

// stormOutcome is what the client got for one request.
type stormOutcome struct {
	status     int
	err        error
	beforeKill bool // answered before the kill began: no excuse for a failure
}

// TestStorm is the fault storm of issue 6, on each server.
func TestStorm(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		n := envInt("SCOPED_STORM_REQUESTS", 5000)
		seed := uint64(envInt("SCOPED_STORM_SEED", 6))
		runStorm(t, s, n, seed)
	})
}

// stormServer is the HTTP side of a storm.
type stormServer struct {
	s      dbtest.Server
	p      *pool
	table  string
	txs    *scoped.ScopedSession[*sql.Tx]
	kinds  []stormKind
	hooked []chan struct{} // closed when the handler of a kAbandon request has inserted

	commitGate sync.RWMutex // held for writing while connections are killed

	ctx        context.Context  // ends when the storm's budget is spent
	holders    holders[*sql.Tx] // which live requests hold each transaction
	notOwnMu   sync.Mutex
	notOwn     []string     // requests that did not see their own session
	notNoticed atomic.Int64 // handlers that never saw their client go
	injected   atomic.Int64 // commits failed on purpose
	recovered  atomic.Int64
}

func runStorm(t *testing.T, s dbtest.Server, n int, seed uint64) {
	baseScopes := scoped.LiveScopes()
	started := time.Now()
	fig := stormFigures{Test: "TestStorm", Server: s.Name, Seed: seed, Requests: n, InFlight: stormInFlight, Pool: stormPool,
		ByKind: map[string]int{}, Answers: map[string]int{}, FaultsInjected: map[string]int{}}

	p := openPool(t, s, stormPool)
	ss := &stormServer{s: s, p: p, table: createTable(t, p, "storm")}
	var stopStorm context.CancelFunc
	ss.ctx, stopStorm = context.WithTimeout(context.Background(), stormBudget)
	defer stopStorm()
	// Every goroutine started from here on must be gone at the end, once
	// the server, the client and the pool are closed.
	before := goleak.IgnoreCurrent()
	ss.txs = scoped.New(scopedsql.Tx(p.DB, nil),
		scoped.WithName("storm"),
		scoped.WithTeardownErrorHook(nil), // failed rollbacks on killed connections are expected
		scoped.WithCommit(ss.commit))

	// The schedule: a kind per id, the same for a given seed. The extra
	// ids after n are the requests that check that the pool still serves.
	const after = 20
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	ss.kinds = make([]stormKind, n+after)
	ss.hooked = make([]chan struct{}, n+after)
	for id := range ss.kinds {
		k := kCommit
		if id < n {
			x := rng.IntN(100)
			for k = 0; x >= stormWeights[k]; k++ {
				x -= stormWeights[k]
			}
		}
		ss.kinds[id] = k
		ss.hooked[id] = make(chan struct{})
		if id < n {
			fig.ByKind[k.String()]++
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           ss.handler(),
		ReadHeaderTimeout: dbtest.Bound,
		ErrorLog:          log.New(io.Discard, "", 0), // aborted handlers are part of the storm
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	transport := &http.Transport{MaxIdleConnsPerHost: stormInFlight, DisableCompression: true}
	client := &http.Client{Transport: transport}
	base := "http://" + ln.Addr().String()
	shutdown := func() {
		ctx, cancel := context.WithTimeout(context.Background(), dbtest.Bound)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		transport.CloseIdleConnections()
	}

	// The storm: stormInFlight clients, and the killer midway.
	outcomes := make([]stormOutcome, n+after)
	var done atomic.Int64
	var killBegan atomic.Bool
	midway := make(chan struct{})
	killed := make(chan error, 1)
	go func() {
		<-midway
		killBegan.Store(true)
		ss.commitGate.Lock() // no COMMIT is in flight while connections die
		defer ss.commitGate.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), dbtest.Bound)
		defer cancel()
		k, err := p.kill(ctx)
		fig.ConnectionsKilled = k
		killed <- err
	}()
	ids := make(chan int)
	var wg sync.WaitGroup
	for range stormInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				o := ss.request(client, base, id)
				o.beforeKill = !killBegan.Load()
				outcomes[id] = o
				if done.Add(1) == int64(max(n/2, 1)) {
					close(midway)
				}
			}
		}()
	}
	for id := range n {
		ids <- id
	}
	close(ids)
	wg.Wait()
	if ss.ctx.Err() != nil {
		t.Errorf("the storm did not finish within %v", stormBudget)
	}
	if err := <-killed; err != nil {
		t.Errorf("killing the pool's connections: %v", err)
	}

	// The pool serves new requests after all that.
	fig.ServesAfterwards = true
	for id := n; id < n+after; id++ {
		outcomes[id] = ss.request(client, base, id)
		if outcomes[id].status != http.StatusCreated {
			fig.ServesAfterwards = false
			t.Errorf("request %d after the storm: %d %v, want 201", id, outcomes[id].status, outcomes[id].err)
		}
	}
	shutdown()

	// What the client got, against what the table holds.
	present := rowIDs(t, p, ss.table)
	fig.RowsPresent = len(present)
	for id, o := range outcomes {
		k := ss.kinds[id]
		answer := strconv.Itoa(o.status)
		if o.err != nil {
			answer = "client error"
		}
		if id < n {
			fig.Answers[k.String()+" "+answer]++
		}
		got2xx := o.status >= 200 && o.status < 300
		if got2xx && k != kRead {
			fig.Answered2xx++
		}
		switch c := present[id]; {
		case got2xx && k != kRead && c == 0:
			fig.LostWrites++
			t.Errorf("id %d (%v) was answered %d but is not in the table", id, k, o.status)
		case !got2xx && c > 0:
			fig.PhantomWrites++
			t.Errorf("id %d (%v) was answered %s but is in the table", id, k, answer)
		case c > 1:
			fig.DuplicateRows++
			t.Errorf("id %d is in the table %d times", id, c)
		}
		if id < n && !ss.expected(k, id, o) {
			if !o.beforeKill && (o.status == http.StatusInternalServerError || o.status == http.StatusServiceUnavailable) {
				fig.FailedByKill++ // a statement or commit on a connection that was killed
			} else {
				t.Errorf("id %d (%v): %d %v, not an answer this kind of request can get", id, k, o.status, o.err)
			}
		}
	}
	for id := range present {
		if id < 0 || id >= len(outcomes) {
			fig.PhantomWrites++
			t.Errorf("id %d is in the table but was never requested", id)
		}
	}
	// A connection killed mid-request fails that request (at its INSERT or
	// COMMIT), and one killed while idle fails the next request that uses
	// it, at most once per connection: so no more than what was in flight
	// plus twice the pool.
	if limit := stormInFlight + 2*stormPool; fig.FailedByKill > limit {
		t.Errorf("%d requests failed for no reason of their own, more than the %d the kill can explain", fig.FailedByKill, limit)
	}

	fig.FaultsInjected = map[string]int{
		"4xx": fig.ByKind["4xx"], "5xx": fig.ByKind["5xx"], "panic": fig.ByKind["panic"], "abort": fig.ByKind["abort"],
		"timeout": fig.ByKind["timeout"], "abandon": fig.ByKind["abandon"],
		"commit_failure": int(ss.injected.Load()), "connections_killed": fig.ConnectionsKilled,
	}
	if int(ss.injected.Load()) > fig.ByKind["commit-fail"] {
		t.Errorf("%d commits failed on purpose, for %d requests that asked", ss.injected.Load(), fig.ByKind["commit-fail"])
	}
	ss.notOwnMu.Lock()
	wrong := append(ss.holders.sharings(), ss.notOwn...)
	ss.notOwnMu.Unlock()
	fig.CrossScopeSessions = len(wrong)
	for _, w := range wrong {
		t.Errorf("a request saw a session of another request, or not its own: %s", w)
	}
	if k := ss.notNoticed.Load(); k != 0 {
		t.Errorf("%d handlers never saw their client go away", k)
	}

	// Nothing leaked.
	fig.InUseAfterDrain = p.drain()
	var err2 error
	if fig.OpenTransactions, err2 = p.openTransactions(dbtest.Ctx(t)); err2 != nil {
		t.Errorf("open transactions: %v", err2)
	}
	fig.LeakedConnections = fig.InUseAfterDrain + fig.OpenTransactions
	if fig.InUseAfterDrain != 0 {
		t.Errorf("db.Stats().InUse = %d after the storm drained", fig.InUseAfterDrain)
	}
	if fig.OpenTransactions != 0 {
		t.Errorf("%d of the pool's connections are idle in a transaction", fig.OpenTransactions)
	}
	fig.LiveScopes = scoped.LiveScopes() - baseScopes
	fig.SessionStats = ss.txs.Stats()
	fig.LiveSessions = fig.SessionStats.Live
	if fig.LiveScopes != 0 || fig.LiveSessions != 0 {
		t.Errorf("live scopes %d, live sessions %d after the storm, want 0 and 0", fig.LiveScopes, fig.LiveSessions)
	}
	fig.ConnectionsOpened = p.connectionsOpened()
	fig.DurationMilliseconds = time.Since(started).Milliseconds()

	_ = p.DB.Close() // its connections' goroutines end with them
	if err := goleak.Find(before); err != nil {
		fig.LeakedGoroutines = 1
		t.Errorf("goroutines leaked by the storm: %v", err)
	}
	report(t, fig)
}

// expected reports whether o is what a request of kind k gets when
// nothing but its own fault happens.
func (ss *stormServer) expected(k stormKind, id int, o stormOutcome) bool {
	switch k {
	case kCommit:
		return o.status == http.StatusCreated
	case kRead:
		return o.status == http.StatusOK
	case k4xx:
		return o.status == stormCode(k, id)
	case k5xx:
		return o.status == stormCode(k, id)
	case kPanic:
		return o.status == http.StatusInternalServerError
	case kAbort, kAbandon:
		return o.err != nil
	case kTimeout:
		return o.status == http.StatusServiceUnavailable
	case kCommitFail:
		return o.status == http.StatusInternalServerError
	}
	return false
}

func stormCode(k stormKind, id int) int {
	if k == k4xx {
		return [...]int{400, 404, 409, 422}[id%4]
	}
	return [...]int{500, 502, 503}[id%3]
}

// request sends request id and reads the whole answer.
func (ss *stormServer) request(client *http.Client, base string, id int) stormOutcome {
	ctx, cancel := context.WithTimeout(ss.ctx, dbtest.Bound)
	defer cancel()
	if ss.kinds[id] == kAbandon {
		// Go away once the handler is inside its transaction.
		go func() {
			select {
			case <-ss.hooked[id]:
			case <-ctx.Done():
			}
			cancel()
		}()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/req?id="+strconv.Itoa(id), nil)
	if err != nil {
		return stormOutcome{err: err}
	}
	resp, err := client.Do(req)
	if err != nil {
		return stormOutcome{err: err}
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return stormOutcome{status: resp.StatusCode, err: err}
	}
	return stormOutcome{status: resp.StatusCode}
}

// commit is the ScopedSession's commit: it fails on purpose for the
// requests that ask for it (rolling back, so that nothing is committed),
// and waits while the killer works, so that no COMMIT is ever in flight
// on a connection that is being killed: the one case where a client could
// not know whether its commit happened.
func (ss *stormServer) commit(ctx context.Context, tx *sql.Tx) error {
	ss.commitGate.RLock()
	defer ss.commitGate.RUnlock()
	if id, ok := ctx.Value(stormIDKey{}).(int); ok && ss.kinds[id] == kCommitFail {
		ss.injected.Add(1)
		_ = tx.Rollback()
		return errInjectedCommit
	}
	return tx.Commit()
}

// handler is the server's middleware chain, outermost first: the request
// id, a recoverer (as chi's), the request deadline, scopedhttp, the handler.
func (ss *stormServer) handler() http.Handler {
	scopedMW := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(ss.txs))
	inner := scopedMW(http.HandlerFunc(ss.serve))
	withDeadline := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := dbtest.Bound
		if ss.kinds[r.Context().Value(stormIDKey{}).(int)] == kTimeout {
			d = stormDeadline
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		inner.ServeHTTP(w, r.WithContext(ctx))
	})
	recoverer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				ss.recovered.Add(1)
				w.WriteHeader(http.StatusInternalServerError)
			}
		}()
		withDeadline.ServeHTTP(w, r)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.URL.Query().Get("id"))
		if err != nil || id < 0 || id >= len(ss.kinds) {
			http.Error(w, "bad id", http.StatusBadRequest)
			return
		}
		recoverer.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), stormIDKey{}, id)))
	})
}

func (ss *stormServer) serve(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := ctx.Value(stormIDKey{}).(int)
	k := ss.kinds[id]
	hooked := sync.OnceFunc(func() { close(ss.hooked[id]) })
	defer hooked()
	if k == kRead {
		w.WriteHeader(http.StatusOK) // a request that needs no session opens none
		return
	}
	tx, err := scoped.Current[*sql.Tx](ctx)
	if err != nil {
		stormDBError(w, ctx, err)
		return
	}
	defer ss.holders.enter(tx, id)()
	switch again, err := ss.txs.Current(ctx); {
	case errors.Is(err, scoped.ErrScopeClosed):
		// The request's deadline (or its client) ended its context after
		// its session began, and the safety net ended the scope: Current
		// says so (spec §2) rather than create another session. That is
		// no sharing, but only the end of the context may cause it.
		if !ss.contextEnds(ctx) {
			ss.notOwnf("request %d (%v): the scope ended under a live handler whose context never ended", id, k)
		}
		stormDBError(w, ctx, err)
		return
	case err != nil:
		ss.notOwnf("request %d (%v): a second Current failed: %v", id, k, err)
		stormDBError(w, ctx, err)
		return
	case again != tx:
		ss.notOwnf("request %d (%v): a second Current gave another session", id, k)
	}
	if _, err := tx.ExecContext(ctx, sqlFor(ss.s, "INSERT INTO "+ss.table+" (id, kind) VALUES ($1, $2)"), id, k.String()); err != nil {
		stormDBError(w, ctx, err)
		return
	}
	var seen int
	if err := tx.QueryRowContext(ctx, sqlFor(ss.s, "SELECT count(*) FROM "+ss.table+" WHERE id = $1"), id).Scan(&seen); err != nil {
		stormDBError(w, ctx, err)
		return
	}
	if seen != 1 {
		ss.notOwnf("request %d (%v): its transaction holds its row %d times, want 1", id, k, seen)
	}
	hooked()
	switch k {
	case kCommit, kCommitFail:
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, strconv.Itoa(id))
	case k4xx, k5xx:
		w.WriteHeader(stormCode(k, id))
	case kPanic:
		panic(fmt.Sprintf("storm: request %d panics", id))
	case kAbort:
		panic(http.ErrAbortHandler)
	case kTimeout, kAbandon:
		// Outlive the deadline, or the client: the commit point comes
		// after the request's context has ended.
		select {
		case <-ctx.Done():
		case <-time.After(dbtest.Bound):
			if k == kAbandon {
				ss.notNoticed.Add(1)
			}
		}
		w.WriteHeader(http.StatusCreated)
	}
}

// notOwnf records a request that did not see its own session.
func (ss *stormServer) notOwnf(format string, args ...any) {
	ss.notOwnMu.Lock()
	defer ss.notOwnMu.Unlock()
	ss.notOwn = append(ss.notOwn, fmt.Sprintf(format, args...))
}

// contextEnds reports whether ctx ends within the bound. The safety net
// runs on a goroutine that context.AfterFunc starts as the request's
// context is cancelled, which may be before ctx, a context derived from
// it, reports it: so the handler waits for it rather than look once.
func (ss *stormServer) contextEnds(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-time.After(dbtest.Bound):
		return false
	}
}

// stormDBError answers a failed statement: 503 when the request's
// deadline cut it short (whatever error the driver gives for a cancelled
// statement), 500 otherwise.
func stormDBError(w http.ResponseWriter, ctx context.Context, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		code = http.StatusServiceUnavailable
	}
	http.Error(w, err.Error(), code)
}
