package dbtest

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
	"github.com/go-scoped/scoped/internal/testkit"
)

// RestartLoad is the server-restart test (issue 16), run once for every
// PostgreSQL driver. Writers run units of work, each inserting a unique id
// in a scope of its own and committing it by [scoped.Scope.Commit], while
// the server of a [Cluster] restarts again and again: a fast restart
// (sessions ended with 57P01, a checkpoint), a crash (immediate stop,
// crash recovery at the next start) and a crash that stays down until
// writers have failed against it. Each unit's answer is recorded: saved,
// not saved (an error that is not [scoped.ErrCommitUnknown]) or unknown.
// Afterwards, on the restarted server, every saved id has its row (0
// lost), no "not saved" id has one (0 phantom) and no row is of an id no
// unit wrote; no unit took longer than the resolve timeout plus a margin
// (a hang guard, not a timing assertion). Restarts go on until some
// COMMIT in flight has failed, so that the test cannot pass without
// having been tested.
//
// What differs between drivers is how a unit is done, how the rows are
// read and whether the resolver's questions can be seen; the load, the
// restarts and the checks are here once, so that the tests stay exactly
// as strong as each other.
type RestartLoad struct {
	Writers int
	// Resolve is the resolver's timeout: a unit that takes longer than it
	// plus a margin fails the test (a hang guard, not a timing assertion).
	Resolve time.Duration
	// Unit inserts id in a scope of its own and commits it. committing
	// says whether COMMIT was sent; xid is the transaction's id if known
	// (what the resolver asks about), to explain a wrong answer.
	Unit func(ctx context.Context, id int64) (committing bool, xid string, err error)
	// Saved returns the ids that have a row, read on the restarted server.
	Saved func() []int64
	// InUse returns how many connections of the driver's pool are in use;
	// once every unit has returned it must be 0.
	InUse func() int
	// Teardown collects the errors of the scopes' teardowns (their
	// rollbacks fail while the server is down): logged, not errors.
	Teardown *testkit.Errors
	// ResolverSaid, if set, says what the resolver asked about xid and
	// what the server answered, to explain a wrong answer.
	ResolverSaid func(xid string) string
}

// RestartFigures are the counts of one run of a [RestartLoad].
type RestartFigures struct {
	Test             string   `json:"test"`
	Restarts         []string `json:"restarts"`
	Units            int      `json:"units"`
	OK               int      `json:"ok"`
	NotSaved         int      `json:"not_saved"`
	NotSavedAtCommit int      `json:"not_saved_at_commit"`
	Forgotten        int      `json:"not_saved_forgotten"` // of NotSavedAtCommit: the restarted server had forgotten the id
	Unknown          int      `json:"unknown"`
	UnknownSaved     int      `json:"unknown_saved"`
	// UnknownCheckpoint are the unknown answers given because the server
	// had checkpointed since the transaction began (shared/xact's rule),
	// not because the resolve timeout passed.
	UnknownCheckpoint int   `json:"unknown_checkpoint"`
	Lost              int   `json:"lost"`
	Phantom           int   `json:"phantom"`
	Strays            int   `json:"strays"`
	LongestMS         int64 `json:"longest_unit_ms"`
	ResolveMS         int64 `json:"resolve_timeout_ms"`
}

// Run runs the load against c, restarts c's server (see
// restartUntilCommitsFail), stops the writers and checks every answer:
// an id answered saved has its row (else lost), an id answered not saved
// (an error that is not [scoped.ErrCommitUnknown]) has none (else
// phantom), no row is of an id no unit wrote, no unit outlasted the
// resolve timeout and a margin, and some unit failed. Each failure is an
// error of t; the figures are returned.
func (r RestartLoad) Run(t *testing.T, c *Cluster) RestartFigures {
	t.Helper()
	w := startWriters(t, r.Writers, r.Unit)
	w.restartUntilCommitsFail(t, c)
	results := w.stop(t)
	saved := map[int64]bool{}
	for _, id := range r.Saved() {
		saved[id] = true
	}
	f := r.check(t, results, saved)
	f.Test, f.Restarts = t.Name(), w.restarts
	if n := r.InUse(); n != 0 {
		t.Errorf("%d connections still in use after every unit returned, want 0", n)
	}
	errs := r.Teardown.List()
	t.Logf("teardown errors: %d", len(errs))
	if len(errs) > 0 {
		t.Logf("first teardown error: %v", errs[0])
	}
	return f
}

// restartOutcome is one unit of work's answer.
type restartOutcome struct {
	id         int64
	committing bool   // COMMIT was sent
	xid        string // the transaction's id, if known
	err        error
	took       time.Duration
}

// restartWriters run units of work on goroutines, each with a unique id,
// until stopped, counting their answers as they come.
type restartWriters struct {
	ok, failed, commitFailed atomic.Int64
	next                     atomic.Int64
	quit                     chan struct{}
	done                     chan struct{}
	perWriter                [][]restartOutcome
	restarts                 []string
}

func startWriters(t *testing.T, writers int, unit func(ctx context.Context, id int64) (bool, string, error)) *restartWriters {
	l := &restartWriters{quit: make(chan struct{}), done: make(chan struct{}), perWriter: make([][]restartOutcome, writers)}
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
				id := l.next.Add(1)
				// The context is only a hang guard: the bound under test is
				// the resolver's own.
				ctx, cancel := context.WithTimeout(context.Background(), testkit.Bound)
				start := time.Now()
				committing, xid, err := unit(ctx, id)
				took := time.Since(start)
				cancel()
				l.perWriter[w] = append(l.perWriter[w], restartOutcome{id, committing, xid, err, took})
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
func (l *restartWriters) serving(t *testing.T, n int64, what string) {
	t.Helper()
	target := l.ok.Load() + n
	testkit.Eventually(t, what, func() bool { return l.ok.Load() >= target })
}

// restartUntilCommitsFail restarts c's server at least 8 times, cycling
// through a fast restart, a crash, a crash that stays down until some
// unit failed against it, and a crash again, each once the server
// commits again, and on until some COMMIT in flight has failed (at most
// 12 restarts; none failing is an error: nothing was tested).
func (l *restartWriters) restartUntilCommitsFail(t *testing.T, c *Cluster) {
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
			c.Restart(Fast)
		case "immediate":
			c.Restart(Immediate)
		default:
			c.Stop(Immediate)
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
func (l *restartWriters) halt(t *testing.T) {
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	testkit.WaitFor(t, l.done, "every writer returning")
}

// stop stops the writers and returns every answer.
func (l *restartWriters) stop(t *testing.T) []restartOutcome {
	t.Helper()
	l.halt(t)
	var all []restartOutcome
	for _, o := range l.perWriter {
		all = append(all, o...)
	}
	t.Logf("restarts: %d %v", len(l.restarts), l.restarts)
	return all
}

// check checks the answers against the rows saved and logs the counts.
func (r RestartLoad) check(t *testing.T, results []restartOutcome, saved map[int64]bool) RestartFigures {
	t.Helper()
	f := RestartFigures{Units: len(results), ResolveMS: r.Resolve.Milliseconds()}
	limit := r.Resolve + 10*time.Second
	var longest time.Duration
	attempted := map[int64]bool{}
	byXid := map[string][]restartOutcome{}
	for _, o := range results {
		attempted[o.id] = true
		if o.xid != "" {
			byXid[o.xid] = append(byXid[o.xid], o)
		}
	}
	// sharers tells, for a wrong answer, which other units' transactions
	// had the same id (an id the server gave twice) and, if it can be
	// seen, what the resolver asked.
	sharers := func(o restartOutcome) string {
		var s []string
		for _, x := range byXid[o.xid] {
			if x.id != o.id {
				s = append(s, fmt.Sprintf("unit %d (saved %v, answer %v)", x.id, saved[x.id], x.err))
			}
		}
		said := ""
		if r.ResolverSaid != nil {
			said = "; " + r.ResolverSaid(o.xid)
		}
		return fmt.Sprintf("transaction %q, the same id as %v%s", o.xid, s, said)
	}
	for _, o := range results {
		longest = max(longest, o.took)
		if o.took > limit {
			t.Errorf("unit %d took %v, more than the resolve timeout %v and a margin: %v", o.id, o.took, r.Resolve, o.err)
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
			if strings.Contains(o.err.Error(), "has checkpointed") {
				f.UnknownCheckpoint++
			}
			if f.Unknown <= 3 {
				t.Logf("unknown %d (saved %v): %v", o.id, saved[o.id], o.err)
			}
		default:
			f.NotSaved++
			if o.committing {
				f.NotSavedAtCommit++
				if strings.Contains(o.err.Error(), "has forgotten transaction") {
					f.Forgotten++
				}
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
	f.LongestMS = longest.Milliseconds()
	t.Logf("%d units: %d saved, %d not saved (%d of them at COMMIT, %d of those forgotten by the server), %d unknown (%d of those saved, %d for a checkpoint since the transaction began); lost %d, phantom %d; longest unit %v (resolve timeout %v)",
		f.Units, f.OK, f.NotSaved, f.NotSavedAtCommit, f.Forgotten, f.Unknown, f.UnknownSaved, f.UnknownCheckpoint, f.Lost, f.Phantom, longest, r.Resolve)
	if f.Strays != 0 {
		t.Errorf("%d rows of ids no unit wrote", f.Strays)
	}
	if f.NotSaved+f.Unknown == 0 {
		t.Errorf("no unit failed across the restarts: the restarts hit nothing in flight, the test proved nothing")
	}
	return f
}
