package scopedpgx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestServerRestartLosesNothingAndMakesNoPhantom is issue 16's server
// restart, on pgx: 16 goroutines insert rows with unique ids, one per
// scope, committed by [scoped.Scope.Commit] with verified commits (the
// default), while the server of a cluster of the test's own restarts
// again and again: a fast restart (sessions ended with 57P01, a
// checkpoint), a crash (immediate stop, crash recovery at the start) and
// a crash that stays down until writers have failed against it. Each
// unit's answer is recorded: saved, not saved (an error that is not
// [scoped.ErrCommitUnknown]) or unknown. Afterwards, on the restarted
// server, every saved id has its row (0 lost) and no "not saved" id has
// one (0 phantom); no unit took longer than its resolve timeout plus a
// margin (a hang guard, not a timing assertion). Restarts go on until
// some of them have failed commits in flight, so that the test cannot
// pass without having been tested.
//
// It found lost writes (RELIABILITY.md, "Server restart"): after a crash
// the server hands out a transaction id again when nothing of its first
// transaction reached the disk, and the resolver takes the new
// transaction's commit for the lost one's.
func TestServerRestartLosesNothingAndMakesNoPhantom(t *testing.T) {
	c := dbtest.NewCluster(t)
	const writers = 16
	const resolve = DefaultCommitResolveTimeout
	cfg, err := pgxpool.ParseConfig(c.DSN)
	if err != nil {
		t.Fatal(err)
	}
	// A connection for every writer and some to spare; scopedpgx frees a
	// failed COMMIT's slot for its resolution anyway.
	cfg.MaxConns = writers + 4
	resolver := &resolverTrace{asked: map[string]int{}, errs: map[string][]string{}}
	cfg.ConnConfig.Tracer = resolver
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // before the cluster is dropped
	table := newTable(t, pool, "restart")
	var teardownErrs testkit.Errors
	txs := scoped.New(Tx(pool, pgx.TxOptions{}, WithCommitResolveTimeout(resolve)),
		scoped.WithRollback(Rollback), scoped.WithTeardownErrorHook(teardownErrs.Hook))

	// unit inserts id in a scope of its own and commits it; committing
	// says whether COMMIT was sent, xid is the transaction's id as
	// scopedpgx read it (what its resolver asks about).
	unit := func(ctx context.Context, id int) (committing bool, xid string, err error) {
		ctx, scope := scoped.Begin(ctx)
		defer scope.Remove()
		ptx, err := txs.Current(ctx)
		if err != nil {
			return false, "", err
		}
		_, err = ptx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id)
		xid = ptx.(*tx).xid
		if err != nil {
			return false, xid, err
		}
		return true, xid, scope.Commit()
	}

	load := startRestartLoad(t, writers, unit)
	load.restartUntilCommitsFail(t, c)
	results := load.stop(t)

	saved := map[int]bool{}
	for _, id := range ids(t, pool, table) {
		saved[id] = true
	}
	classify(t, results, saved, resolve, resolver.about)
	t.Logf("pg_xact_status questions asked by the resolver: %d; teardown errors: %d", resolver.questions.Load(), len(teardownErrs.List()))
	if errs := teardownErrs.List(); len(errs) > 0 {
		t.Logf("first teardown error: %v", errs[0])
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired after every unit returned", n)
	}
}

// resolverTrace counts the resolver's questions (pg_xact_status),
// evidence that commits whose answer was lost were resolved, and keeps,
// by transaction id, how often it was asked about and the errors the
// server answered, to explain a wrong answer.
type resolverTrace struct {
	questions atomic.Int64
	mu        sync.Mutex
	asked     map[string]int
	errs      map[string][]string
}

type xidKey struct{}

func (r *resolverTrace) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if !strings.HasPrefix(d.SQL, "select pg_xact_status") || len(d.Args) != 1 {
		return ctx
	}
	r.questions.Add(1)
	xid := fmt.Sprint(d.Args[0])
	r.mu.Lock()
	r.asked[xid]++
	r.mu.Unlock()
	return context.WithValue(ctx, xidKey{}, xid)
}

func (r *resolverTrace) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	xid, ok := ctx.Value(xidKey{}).(string)
	if !ok || d.Err == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.errs[xid]; len(e) == 0 || e[len(e)-1] != d.Err.Error() {
		r.errs[xid] = append(e, d.Err.Error())
	}
}

// about says what the resolver asked about xid and what failed.
func (r *resolverTrace) about(xid string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("the resolver asked about it %d times, failing with %q", r.asked[xid], r.errs[xid])
}

// outcome is one unit of work's answer.
type outcome struct {
	id         int
	committing bool   // COMMIT was sent
	xid        string // the transaction's id, if known
	err        error
	took       time.Duration
}

// restartLoad runs units of work on writer goroutines, each with a unique
// id, until stopped, counting their answers as they come.
type restartLoad struct {
	ok, failed, commitFailed atomic.Int64
	next                     atomic.Int64
	quit                     chan struct{}
	done                     chan struct{}
	perWriter                [][]outcome
	restarts                 []string
}

func startRestartLoad(t *testing.T, writers int, unit func(ctx context.Context, id int) (bool, string, error)) *restartLoad {
	l := &restartLoad{quit: make(chan struct{}), done: make(chan struct{}), perWriter: make([][]outcome, writers)}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-l.quit:
					return
				default:
				}
				id := int(l.next.Add(1))
				// The context is only a hang guard: the bound under test is
				// the resolver's own.
				ctx, cancel := context.WithTimeout(context.Background(), testkit.Bound)
				start := time.Now()
				committing, xid, err := unit(ctx, id)
				took := time.Since(start)
				cancel()
				l.perWriter[w] = append(l.perWriter[w], outcome{id, committing, xid, err, took})
				if err == nil {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				if committing {
					l.commitFailed.Add(1)
				}
				// Pacing, not timing: a server that is down refuses at once,
				// and 16 writers would spin on it.
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
	t.Cleanup(func() { l.halt(t) }) // should the test fail before stop
	return l
}

// serving waits until n more units have committed.
func (l *restartLoad) serving(t *testing.T, n int64, what string) {
	t.Helper()
	target := l.ok.Load() + n
	testkit.Eventually(t, what, func() bool { return l.ok.Load() >= target })
}

// restartUntilCommitsFail restarts c's server at least 8 times, cycling
// through a fast restart, a crash, a crash that stays down until some
// unit failed against it, and a crash again, each once the server
// commits again, and on until some COMMIT in flight has failed (at most
// 12 restarts; none failing is an error: nothing was tested).
func (l *restartLoad) restartUntilCommitsFail(t *testing.T, c *dbtest.Cluster) {
	t.Helper()
	const minRestarts, maxRestarts = 8, 12
	schedule := []string{"fast", "immediate", "immediate stop, start", "immediate"}
	l.serving(t, 200, "the first 200 commits")
	for i := 0; i < maxRestarts; i++ {
		if i >= minRestarts && l.commitFailed.Load() > 0 {
			break
		}
		switch kind := schedule[i%len(schedule)]; kind {
		case "fast":
			c.Restart(dbtest.Fast)
		case "immediate":
			c.Restart(dbtest.Immediate)
		default:
			c.Stop(dbtest.Immediate)
			failed := l.failed.Load()
			testkit.Eventually(t, "a unit failing against the stopped server", func() bool { return l.failed.Load() > failed })
			c.Start()
		}
		l.restarts = append(l.restarts, schedule[i%len(schedule)])
		l.serving(t, 100, "100 commits after the restart")
	}
	if l.commitFailed.Load() == 0 {
		t.Errorf("%d restarts failed no COMMIT in flight: the test proved nothing about commits", len(l.restarts))
	}
}

// halt stops the writers, failing t if one does not return within the
// bound.
func (l *restartLoad) halt(t *testing.T) {
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	testkit.WaitFor(t, l.done, "every writer returning")
}

// stop stops the writers and returns every answer.
func (l *restartLoad) stop(t *testing.T) []outcome {
	t.Helper()
	l.halt(t)
	var all []outcome
	for _, o := range l.perWriter {
		all = append(all, o...)
	}
	t.Logf("restarts: %d %v", len(l.restarts), l.restarts)
	return all
}

// restartFigures are the counts of one run.
type restartFigures struct {
	Units, OK, NotSaved, NotSavedAtCommit, Unknown, UnknownSaved, Lost, Phantom, Strays int
	Longest                                                                             time.Duration
}

// classify checks the answers against the rows saved and logs the counts.
func classify(t *testing.T, results []outcome, saved map[int]bool, resolve time.Duration, resolverSaid func(xid string) string) restartFigures {
	t.Helper()
	f := restartFigures{Units: len(results)}
	limit := resolve + 10*time.Second
	attempted := map[int]bool{}
	byXid := map[string][]outcome{}
	for _, o := range results {
		attempted[o.id] = true
		if o.xid != "" {
			byXid[o.xid] = append(byXid[o.xid], o)
		}
	}
	// sharers tells, for a wrong answer, which other units' transactions
	// had the same id: an id the server gave twice.
	sharers := func(o outcome) string {
		var s []string
		for _, x := range byXid[o.xid] {
			if x.id != o.id {
				s = append(s, fmt.Sprintf("unit %d (saved %v, answer %v)", x.id, saved[x.id], x.err))
			}
		}
		return fmt.Sprintf("transaction %q, the same id as %v; %s", o.xid, s, resolverSaid(o.xid))
	}
	for _, o := range results {
		f.Longest = max(f.Longest, o.took)
		if o.took > limit {
			t.Errorf("unit %d took %v, more than the resolve timeout %v and a margin: %v", o.id, o.took, resolve, o.err)
		}
		switch {
		case o.err == nil:
			f.OK++
			if !saved[o.id] {
				f.Lost++
				t.Errorf("lost: unit %d was answered saved and has no row; %s", o.id, sharers(o))
			}
		case errors.Is(o.err, scoped.ErrCommitUnknown):
			f.Unknown++
			if saved[o.id] {
				f.UnknownSaved++
			}
			if f.Unknown <= 3 {
				t.Logf("unknown %d: %v", o.id, o.err)
			}
		default:
			f.NotSaved++
			if o.committing {
				f.NotSavedAtCommit++
				if f.NotSavedAtCommit <= 3 {
					t.Logf("not saved at COMMIT %d: %v", o.id, o.err)
				}
			}
			if saved[o.id] {
				f.Phantom++
				t.Errorf("phantom: unit %d was answered not saved and has a row: %v; %s", o.id, o.err, sharers(o))
			}
		}
	}
	for id := range saved {
		if !attempted[id] {
			f.Strays++
		}
	}
	t.Logf("%d units: %d saved, %d not saved (%d of them at COMMIT), %d unknown (%d of those saved); lost %d, phantom %d; longest unit %v (resolve timeout %v)",
		f.Units, f.OK, f.NotSaved, f.NotSavedAtCommit, f.Unknown, f.UnknownSaved, f.Lost, f.Phantom, f.Longest, resolve)
	if f.Strays != 0 {
		t.Errorf("%d rows of ids no unit wrote", f.Strays)
	}
	if f.NotSaved+f.Unknown == 0 {
		t.Errorf("no unit failed across the restarts: the restarts hit nothing in flight, the test proved nothing")
	}
	return f
}
