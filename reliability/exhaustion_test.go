package reliability_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

const (
	exhaustScopes = 50
	exhaustPool   = 4
)

// exhaustFigures are what a pool exhaustion run reports.
type exhaustFigures struct {
	Test                 string       `json:"test"`
	Server               string       `json:"server"`
	Scopes               int          `json:"scopes"`
	Pool                 int          `json:"pool"`
	Waited               int64        `json:"waited_for_a_connection"`
	Succeeded            int          `json:"succeeded"`
	FailedWithDeadline   int          `json:"failed_with_deadline"`
	TeardownErrors       int64        `json:"teardown_errors"` // rollbacks on connections the driver closed when a deadline cut a statement short
	OtherErrors          int          `json:"other_errors"`
	RowsPresent          int          `json:"rows_present"`
	LostWrites           int          `json:"lost_writes"`
	PhantomWrites        int          `json:"phantom_writes"`
	InUseAfterDrain      int          `json:"in_use_after_drain"`
	OpenTransactions     int          `json:"open_transactions"`
	LeakedConnections    int          `json:"leaked_connections"`
	LiveScopes           int64        `json:"live_scopes"`
	LiveSessions         int64        `json:"live_sessions"`
	SessionStats         scoped.Stats `json:"session_stats"`
	DurationMilliseconds int64        `json:"duration_ms"`
}

// exhaustion is one run: a pool smaller than the number of scopes.
type exhaustion struct {
	t     *testing.T
	s     dbtest.Server
	p     *pool
	table string
	txs   *scoped.ScopedSession[*sql.Tx]
	fig   exhaustFigures
	start time.Time
	base  int64 // LiveScopes before
	waits int64 // p.Stats().WaitCount before

	teardownErrors atomic.Int64
}

func newExhaustion(t *testing.T, s dbtest.Server) *exhaustion {
	p := openPool(t, s, exhaustPool)
	x := &exhaustion{t: t, s: s, p: p, table: createTable(t, p, "exhaust"), start: time.Now(),
		base: scoped.LiveScopes(), waits: p.Stats().WaitCount}
	x.txs = scoped.New(scopedsql.Tx(p.DB, nil), scoped.WithName("exhaust"),
		scoped.WithTeardownErrorHook(func(context.Context, error) { x.teardownErrors.Add(1) }))
	x.fig = exhaustFigures{Test: t.Name(), Server: s.Name, Scopes: exhaustScopes, Pool: exhaustPool}
	return x
}

func (x *exhaustion) insert(ctx context.Context, tx *sql.Tx, id int) error {
	_, err := tx.ExecContext(ctx, sqlFor(x.s, "INSERT INTO "+x.table+" (id, kind) VALUES ($1, 'exhaust')"), id)
	return err
}

// waitForWaiters waits, bounded, until n callers are waiting for one of
// the pool's connections while all of them are in use.
func (x *exhaustion) waitForWaiters(n int64) {
	x.t.Helper()
	deadline := time.Now().Add(dbtest.Bound)
	for {
		st := x.p.Stats()
		if st.InUse == exhaustPool && st.WaitCount-x.waits >= n {
			return
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("%d callers waiting for a connection (InUse %d) after %v, want %d", st.WaitCount-x.waits, st.InUse, dbtest.Bound, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// finish checks that committed ⇔ present and that nothing leaked, and
// reports the figures.
func (x *exhaustion) finish(committed map[int]bool) {
	t := x.t
	present := rowIDs(t, x.p, x.table)
	x.fig.RowsPresent = len(present)
	for id, ok := range committed {
		if ok && present[id] != 1 {
			x.fig.LostWrites++
			t.Errorf("scope %d committed, but its row is there %d times", id, present[id])
		}
		if !ok && present[id] != 0 {
			x.fig.PhantomWrites++
			t.Errorf("scope %d did not commit, but its row is there", id)
		}
	}
	x.fig.Waited = x.p.Stats().WaitCount - x.waits
	x.fig.InUseAfterDrain = x.p.drain()
	var err error
	if x.fig.OpenTransactions, err = x.p.openTransactions(dbtest.Ctx(t)); err != nil {
		t.Errorf("open transactions: %v", err)
	}
	x.fig.LeakedConnections = x.fig.InUseAfterDrain + x.fig.OpenTransactions
	x.fig.LiveScopes = scoped.LiveScopes() - x.base
	x.fig.SessionStats = x.txs.Stats()
	x.fig.LiveSessions = x.fig.SessionStats.Live
	if x.fig.LeakedConnections != 0 || x.fig.LiveScopes != 0 || x.fig.LiveSessions != 0 {
		t.Errorf("leaked: %d connections in use, %d open transactions, %d live scopes, %d live sessions",
			x.fig.InUseAfterDrain, x.fig.OpenTransactions, x.fig.LiveScopes, x.fig.LiveSessions)
	}
	x.fig.TeardownErrors = x.teardownErrors.Load()
	x.fig.DurationMilliseconds = time.Since(x.start).Milliseconds()
	report(t, x.fig)
}

// together runs f(i) for i < n on n goroutines and waits for all of them,
// bounded: a deadlock fails the test instead of hanging it.
func together(t *testing.T, n int, f func(i int)) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * dbtest.Bound):
		t.Fatalf("deadlock: %d scopes did not all finish within %v", n, 2*dbtest.Bound)
	}
}

// TestPoolExhaustion runs more scopes than the pool has connections.
func TestPoolExhaustion(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Run("without deadlines every scope gets a connection", func(t *testing.T) { exhaustNoDeadline(t, s) })
		t.Run("with deadlines waiting scopes fail with the context's error", func(t *testing.T) { exhaustDeadline(t, s) })
		t.Run("HTTP requests with and without deadlines", func(t *testing.T) { exhaustHTTP(t, s) })
	})
}

// exhaustNoDeadline: 50 scopes, 4 connections, no deadline. The first four
// hold their connection until the other 46 are all waiting; then every
// scope gets a connection in turn and commits.
func exhaustNoDeadline(t *testing.T, s dbtest.Server) {
	x := newExhaustion(t, s)
	release := make(chan struct{})
	var mu sync.Mutex
	committed := map[int]bool{}
	go func() {
		x.waitForWaiters(exhaustScopes - exhaustPool)
		close(release)
	}()
	together(t, exhaustScopes, func(i int) {
		ctx, scope := scoped.Begin(context.Background())
		defer scope.Remove()
		err := func() error {
			tx, err := x.txs.Current(ctx)
			if err != nil {
				return err
			}
			if err := x.insert(ctx, tx, i); err != nil {
				return err
			}
			select {
			case <-release:
			case <-time.After(dbtest.Bound):
			}
			return scope.Commit()
		}()
		mu.Lock()
		defer mu.Unlock()
		committed[i] = err == nil
		if err != nil {
			x.fig.OtherErrors++
			t.Errorf("scope %d: %v, want a connection in turn", i, err)
		} else {
			x.fig.Succeeded++
		}
	})
	x.finish(committed)
}

// exhaustDeadline: four scopes hold every connection; 46 scopes with a
// deadline ask for one. Each of them must fail with DeadlineExceeded,
// none may get a connection it then keeps, and once the holders commit
// the pool is whole again.
func exhaustDeadline(t *testing.T, s dbtest.Server) {
	x := newExhaustion(t, s)
	holding := make(chan struct{}, exhaustPool)
	release := make(chan struct{})
	var mu sync.Mutex
	committed := map[int]bool{}
	record := func(i int, err error) {
		mu.Lock()
		defer mu.Unlock()
		committed[i] = err == nil
	}
	var holders sync.WaitGroup
	for i := range exhaustPool {
		holders.Add(1)
		go func() {
			defer holders.Done()
			ctx, scope := scoped.Begin(context.Background())
			defer scope.Remove()
			tx, err := x.txs.Current(ctx)
			if err == nil {
				err = x.insert(ctx, tx, i)
			}
			holding <- struct{}{}
			if err != nil {
				t.Errorf("holder %d: %v", i, err)
				record(i, err)
				return
			}
			select {
			case <-release:
			case <-time.After(2 * dbtest.Bound):
			}
			err = scope.Commit()
			record(i, err)
			if err != nil {
				t.Errorf("holder %d: commit: %v", i, err)
			}
		}()
	}
	for range exhaustPool {
		<-holding
	}
	together(t, exhaustScopes-exhaustPool, func(j int) {
		i := exhaustPool + j
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		ctx, scope := scoped.Begin(ctx)
		defer scope.Remove()
		tx, err := x.txs.Current(ctx)
		if err == nil {
			// The pool cannot have a connection: the holders have all four.
			_ = x.insert(ctx, tx, i)
			t.Errorf("scope %d got a connection while the pool was exhausted", i)
		}
		mu.Lock()
		defer mu.Unlock()
		committed[i] = false
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			x.fig.FailedWithDeadline++
		case err != nil:
			x.fig.OtherErrors++
			t.Errorf("scope %d: %v, want an error wrapping context.DeadlineExceeded", i, err)
		}
	})
	if n := x.p.Stats().InUse; n != exhaustPool {
		t.Errorf("InUse = %d while the holders hold, want %d", n, exhaustPool)
	}
	close(release)
	holders.Wait() // bounded: each holder waits for release at most 2*dbtest.Bound
	for i := range exhaustPool {
		if committed[i] {
			x.fig.Succeeded++
		}
	}
	// The pool serves again.
	ctx, scope := scoped.Begin(context.Background())
	tx, err := x.txs.Current(ctx)
	if err == nil {
		err = x.insert(ctx, tx, exhaustScopes)
	}
	if err == nil {
		err = scope.Commit()
	}
	_ = scope.Remove()
	committed[exhaustScopes] = err == nil
	if err != nil {
		t.Errorf("after the waiters gave up: %v", err)
	}
	x.finish(committed)
}

// exhaustHTTP: 50 concurrent requests through scopedhttp (Autocommit), 4
// connections, each handler holding its transaction a moment; once with
// no deadline (every request commits, 201) and once with a deadline too
// short for all of them (each request either commits, 201, or fails with
// the deadline, 503, and then its row is absent).
func exhaustHTTP(t *testing.T, s dbtest.Server) {
	for _, deadline := range []time.Duration{0, 120 * time.Millisecond} {
		name := "no deadline"
		if deadline > 0 {
			name = "deadline " + deadline.String()
		}
		t.Run(name, func(t *testing.T) {
			x := newExhaustion(t, s)
			var notDeadline atomic.Int64
			handler := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(x.txs))(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					id, _ := strconv.Atoi(r.URL.Query().Get("id"))
					// Waiting for a connection ends with one, or with the
					// context's error.
					tx, err := scoped.Current[*sql.Tx](r.Context())
					if err != nil {
						if !errors.Is(err, context.DeadlineExceeded) {
							notDeadline.Add(1)
							t.Errorf("request %d: %v, want a connection or an error wrapping context.DeadlineExceeded", id, err)
						}
						w.WriteHeader(http.StatusServiceUnavailable)
						return
					}
					if err := x.insert(r.Context(), tx, id); err != nil {
						// A statement the deadline cut short fails as
						// the driver says; only the deadline may cut it.
						if r.Context().Err() == nil {
							notDeadline.Add(1)
							t.Errorf("request %d: insert: %v", id, err)
						}
						w.WriteHeader(http.StatusServiceUnavailable)
						return
					}
					select { // hold the connection a moment
					case <-time.After(10 * time.Millisecond):
					case <-r.Context().Done():
					}
					w.WriteHeader(http.StatusCreated)
				}))
			withDeadline := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if deadline > 0 {
					ctx, cancel := context.WithTimeout(r.Context(), deadline)
					defer cancel()
					r = r.WithContext(ctx)
				}
				handler.ServeHTTP(w, r)
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: withDeadline, ReadHeaderTimeout: dbtest.Bound, ErrorLog: log.New(io.Discard, "", 0)}
			go func() { _ = srv.Serve(ln) }()
			transport := &http.Transport{MaxIdleConnsPerHost: exhaustScopes}
			client := &http.Client{Transport: transport, Timeout: dbtest.Bound}
			var mu sync.Mutex
			committed := map[int]bool{}
			together(t, exhaustScopes, func(i int) {
				resp, err := client.Post("http://"+ln.Addr().String()+"/?id="+strconv.Itoa(i), "text/plain", nil)
				status := 0
				if err == nil {
					status = resp.StatusCode
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
				mu.Lock()
				defer mu.Unlock()
				committed[i] = status == http.StatusCreated
				switch {
				case status == http.StatusCreated:
					x.fig.Succeeded++
				case status == http.StatusServiceUnavailable && deadline > 0:
					x.fig.FailedWithDeadline++
				default:
					x.fig.OtherErrors++
					t.Errorf("request %d: %d %v", i, status, err)
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), dbtest.Bound)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			transport.CloseIdleConnections()
			x.finish(committed)
		})
	}
}
