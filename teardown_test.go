package scoped_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
)

// fakeConnTx both ends a transaction and closes a connection, to show the
// order within one session.
type fakeConnTx struct {
	name string
	rec  *recorder
}

func (c *fakeConnTx) Commit(context.Context) error   { c.rec.add("commit %s", c.name); return nil }
func (c *fakeConnTx) Rollback(context.Context) error { c.rec.add("rollback %s", c.name); return nil }
func (c *fakeConnTx) Close() error                   { c.rec.add("close %s", c.name); return nil }

// fakePlainTx has the database/sql shape, Commit() and Rollback().
type fakePlainTx struct {
	rec  *recorder
	done bool
}

func (t *fakePlainTx) Commit() error {
	t.rec.add("commit")
	if t.done {
		return sql.ErrTxDone
	}
	t.done = true
	return nil
}

func (t *fakePlainTx) Rollback() error {
	t.rec.add("rollback")
	if t.done {
		return sql.ErrTxDone
	}
	t.done = true
	return nil
}

// fakePooled goes back to its pool with Release, like *pgxpool.Conn.
type fakePooled struct{ rec *recorder }

func (c *fakePooled) Release() { c.rec.add("release") }

// gormDB has no method to end it, like *gorm.DB.
type gormDB struct {
	name string
	rec  *recorder
}

func connSession(rec *recorder, name string, closeErr error) *scoped.ScopedSession[*fakeConn] {
	return scoped.New(func(ctx context.Context) (*fakeConn, error) {
		return &fakeConn{name: name, rec: rec, closeErr: closeErr}, nil
	}, scoped.WithName(name), scoped.WithTeardownErrorHook(nil))
}

func TestRemoveEndsSessionsNewestFirst(t *testing.T) {
	rec := &recorder{}
	var calls atomic.Int64
	a := txSession(rec, "A", &calls)
	b := connSession(rec, "B", nil)
	c := scoped.New(func(ctx context.Context) (*fakeConnTx, error) {
		return &fakeConnTx{name: "C", rec: rec}, nil
	})
	d := txSession(rec, "D", &calls)
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)
	mustCurrent(t, c, ctx)
	mustCurrent(t, d, ctx)
	mustCurrent(t, a, ctx) // using a session again does not reorder it

	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	want := []string{"rollback D", "rollback C", "close C", "close B", "rollback A"}
	if ev := rec.list(); !equal(ev, want) {
		t.Fatalf("teardown order %v, want %v (LIFO, rollback before close)", ev, want)
	}
}

func TestScopeCommitCommitsInCreationOrder(t *testing.T) {
	rec := &recorder{}
	var calls atomic.Int64
	a := txSession(rec, "A", &calls)
	b := connSession(rec, "B", nil) // not committable: only closed
	c := txSession(rec, "C", &calls)
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)
	mustCurrent(t, c, ctx)

	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	want := []string{"commit A", "commit C", "close B"}
	if ev := rec.list(); !equal(ev, want) {
		t.Fatalf("events %v, want %v", ev, want)
	}
	if _, err := a.Current(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current after Commit = %v, want ErrScopeClosed", err)
	}
	if err := scope.Remove(); err != nil {
		t.Fatalf("Remove after Commit = %v", err)
	}
	if ev := rec.list(); !equal(ev, want) {
		t.Fatalf("Remove after Commit ended something again: %v", ev)
	}
}

func TestScopeCommitStopsAtFirstFailureAndRollsBackTheRest(t *testing.T) {
	errB := errors.New("serialization failure")
	rec := &recorder{}
	sink := &errSink{}
	newTx := func(name string, commitErr error) *scoped.ScopedSession[*fakeTx] {
		return scoped.New(func(ctx context.Context) (*fakeTx, error) {
			return &fakeTx{name: name, rec: rec, commitErr: commitErr}, nil
		}, scoped.WithName(name), scoped.WithTeardownErrorHook(sink.hook))
	}
	a, b, c, d := newTx("A", nil), newTx("B", errB), newTx("C", nil), newTx("D", nil)
	ctx, scope := scoped.Begin(context.Background())
	txA := mustCurrent(t, a, ctx)
	txB := mustCurrent(t, b, ctx)
	txC := mustCurrent(t, c, ctx)
	txD := mustCurrent(t, d, ctx)

	err := scope.Commit()
	if !errors.Is(err, errB) {
		t.Fatalf("Commit = %v, want an error wrapping %v", err, errB)
	}
	if !strings.Contains(err.Error(), "B") {
		t.Fatalf("Commit error %q does not name the failing session B", err)
	}
	if txA.commits.Load() != 1 || txA.rollbacks.Load() != 0 {
		t.Fatalf("A: commits %d, rollbacks %d; want committed", txA.commits.Load(), txA.rollbacks.Load())
	}
	if txB.commits.Load() != 1 {
		t.Fatalf("B: commit tried %d times, want 1", txB.commits.Load())
	}
	for _, tx := range []*fakeTx{txC, txD} {
		if tx.commits.Load() != 0 || tx.rollbacks.Load() != 1 {
			t.Fatalf("%s after an earlier commit failed: commits %d, rollbacks %d; want rolled back only",
				tx.name, tx.commits.Load(), tx.rollbacks.Load())
		}
	}
	var commits []string
	for _, e := range rec.list() {
		if strings.HasPrefix(e, "commit ") {
			commits = append(commits, e)
		}
	}
	if !equal(commits, []string{"commit A", "commit B"}) {
		t.Fatalf("commits %v, want A then B", commits)
	}
	if errs := sink.list(); len(errs) != 1 || !errors.Is(errs[0], errB) {
		t.Fatalf("hook got %v, want the failed commit", errs)
	}
	if st := b.Stats(); st.Failed != 1 || st.Committed != 0 || st.Live != 0 {
		t.Fatalf("B Stats = %+v, want Failed 1, Live 0", st)
	}
	if st := c.Stats(); st.RolledBack != 1 || st.Live != 0 {
		t.Fatalf("C Stats = %+v, want RolledBack 1, Live 0", st)
	}
}

func TestFailingTeardownDoesNotStopTheOthers(t *testing.T) {
	errA := errors.New("close A failed")
	errB := errors.New("rollback B failed")
	rec := &recorder{}
	sink := &errSink{}
	a := scoped.New(func(ctx context.Context) (*fakeConn, error) {
		return &fakeConn{name: "A", rec: rec, closeErr: errA}, nil
	}, scoped.WithName("A"), scoped.WithTeardownErrorHook(sink.hook))
	b := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{name: "B", rec: rec, rollbackErr: errB}, nil
	}, scoped.WithName("B"), scoped.WithTeardownErrorHook(sink.hook))
	c := connSession(rec, "C", nil)
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)
	mustCurrent(t, c, ctx)

	err := scope.Remove()
	if !errors.Is(err, errA) || !errors.Is(err, errB) {
		t.Fatalf("Remove = %v, want both %v and %v joined", err, errA, errB)
	}
	if want := []string{"close C", "rollback B", "close A"}; !equal(rec.list(), want) {
		t.Fatalf("events %v, want %v: every session ends once, failures or not", rec.list(), want)
	}
	if a.Has(ctx) || b.Has(ctx) || c.Has(ctx) {
		t.Fatal("a session stayed registered after a failing teardown")
	}
	if _, err := a.Current(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current after failed teardown = %v, want ErrScopeClosed", err)
	}
	if _, err := b.Current(ctx); !errors.Is(err, scoped.ErrScopeClosed) {
		t.Fatalf("Current after failed teardown = %v, want ErrScopeClosed", err)
	}
	errs := sink.list()
	if len(errs) != 2 || !errors.Is(errors.Join(errs...), errA) || !errors.Is(errors.Join(errs...), errB) {
		t.Fatalf("hook got %v, want the two teardown errors", errs)
	}
	if err := scope.Remove(); err != nil {
		t.Fatalf("second Remove = %v, want nil", err)
	}
	if n := len(rec.list()); n != 3 {
		t.Fatalf("second Remove ended sessions again: %v", rec.list())
	}
}

func TestTeardownPanicBecomesErrorAndOthersStillEnd(t *testing.T) {
	rec := &recorder{}
	sink := &errSink{}
	var calls atomic.Int64
	a := txSession(rec, "A", &calls)
	b := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{name: "B", rec: rec, rollbackPanic: "kaboom"}, nil
	}, scoped.WithName("B"), scoped.WithTeardownErrorHook(sink.hook))
	c := txSession(rec, "C", &calls)
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)
	mustCurrent(t, c, ctx)

	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("Remove panicked: %v", p)
			}
		}()
		err = scope.Remove()
	}()
	if err == nil || !strings.Contains(err.Error(), "panicked") || !strings.Contains(err.Error(), "kaboom") {
		t.Fatalf("Remove = %v, want an error reporting the panic", err)
	}
	if want := []string{"rollback C", "rollback B", "rollback A"}; !equal(rec.list(), want) {
		t.Fatalf("events %v, want %v", rec.list(), want)
	}
	if errs := sink.list(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "kaboom") {
		t.Fatalf("hook got %v, want the panic", errs)
	}
	if st := b.Stats(); st.Failed != 1 || st.Live != 0 {
		t.Fatalf("Stats = %+v, want Failed 1, Live 0", st)
	}
	if scoped.LiveScopes() < 0 {
		t.Fatal("LiveScopes negative")
	}
}

func TestDefaultTeardownPgxStyle(t *testing.T) {
	type valueKey struct{}
	var calls atomic.Int64
	r := txSession(nil, "pgx", &calls)
	var seen []any
	r2 := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{name: "pgx", onRollback: func(ctx context.Context) {
			seen = append(seen, ctx.Value(valueKey{}))
		}}, nil
	})
	parent := context.WithValue(context.Background(), valueKey{}, "v")

	// Remove rolls back.
	ctx, scope := scoped.Begin(parent)
	tx := mustCurrent(t, r, ctx)
	tx2 := mustCurrent(t, r2, ctx)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if tx.rollbacks.Load() != 1 || tx.commits.Load() != 0 || tx2.rollbacks.Load() != 1 {
		t.Fatalf("Remove: rollbacks %d, commits %d; want a rollback", tx.rollbacks.Load(), tx.commits.Load())
	}
	if len(seen) != 1 || seen[0] != "v" {
		t.Fatalf("Rollback(ctx) saw values %v, want the scope's", seen)
	}

	// Commit commits and does not roll back.
	ctx, scope = scoped.Begin(parent)
	tx = mustCurrent(t, r, ctx)
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	if tx.commits.Load() != 1 || tx.rollbacks.Load() != 0 {
		t.Fatalf("Commit: commits %d, rollbacks %d; want a commit", tx.commits.Load(), tx.rollbacks.Load())
	}
}

func TestDefaultTeardownCloserReleaserAndPlainTx(t *testing.T) {
	rec := &recorder{}
	closer := connSession(rec, "conn", nil)
	releaser := scoped.New(func(ctx context.Context) (*fakePooled, error) { return &fakePooled{rec: rec}, nil })
	plain := scoped.New(func(ctx context.Context) (*fakePlainTx, error) { return &fakePlainTx{rec: rec}, nil })

	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, closer, ctx)
	mustCurrent(t, releaser, ctx)
	mustCurrent(t, plain, ctx)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"rollback", "release", "close conn"}; !equal(rec.list(), want) {
		t.Fatalf("Remove: %v, want %v", rec.list(), want)
	}

	rec.events = nil
	ctx, scope = scoped.Begin(context.Background())
	mustCurrent(t, closer, ctx)
	mustCurrent(t, releaser, ctx)
	mustCurrent(t, plain, ctx)
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"commit", "release", "close conn"}; !equal(rec.list(), want) {
		t.Fatalf("Commit: %v, want %v", rec.list(), want)
	}

	// A transaction its user already ended by hand is not an error.
	rec.events = nil
	ctx, scope = scoped.Begin(context.Background())
	tx := mustCurrent(t, plain, ctx)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := scope.Remove(); err != nil {
		t.Fatalf("Remove after a manual commit = %v, want nil (ErrTxDone ignored)", err)
	}
	if st := plain.Stats(); st.Failed != 0 || st.Live != 0 {
		t.Fatalf("Stats = %+v, want no failure", st)
	}
}

func TestOptionsGiveTeardownToTypesWithoutOne(t *testing.T) {
	rec := &recorder{}
	r := scoped.New(func(ctx context.Context) (*gormDB, error) {
		return &gormDB{name: "gorm", rec: rec}, nil
	},
		scoped.WithCommit(func(ctx context.Context, db *gormDB) error { db.rec.add("commit %s", db.name); return nil }),
		scoped.WithRollback(func(ctx context.Context, db *gormDB) error { db.rec.add("rollback %s", db.name); return nil }),
		scoped.WithClose(func(ctx context.Context, db *gormDB) error { db.rec.add("close %s", db.name); return nil }),
	)
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, r, ctx)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	ctx, scope = scoped.Begin(context.Background())
	mustCurrent(t, r, ctx)
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	want := []string{"rollback gorm", "close gorm", "commit gorm", "close gorm"}
	if !equal(rec.list(), want) {
		t.Fatalf("events %v, want %v", rec.list(), want)
	}
}

func TestOptionsOverrideDetectedTeardown(t *testing.T) {
	rec := &recorder{}
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{name: "tx", rec: rec}, nil
	},
		scoped.WithCommit[*fakeTx](nil), // not committable: Scope.Commit rolls it back
		scoped.WithRollback(func(ctx context.Context, tx *fakeTx) error { rec.add("custom rollback"); return nil }),
	)
	ctx, scope := scoped.Begin(context.Background())
	tx := mustCurrent(t, r, ctx)
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"custom rollback"}; !equal(rec.list(), want) {
		t.Fatalf("events %v, want %v", rec.list(), want)
	}
	if tx.commits.Load() != 0 || tx.rollbacks.Load() != 0 {
		t.Fatal("the detected methods ran despite the options")
	}
}

func recoverString(f func()) (s string) {
	defer func() {
		if p := recover(); p != nil {
			s = fmt.Sprint(p)
		}
	}()
	f()
	return ""
}

func TestNewPanicsForSessionTypeWithNoWayToEnd(t *testing.T) {
	msg := recoverString(func() {
		scoped.New(func(ctx context.Context) (*gormDB, error) { return &gormDB{}, nil })
	})
	for _, want := range []string{"scoped: ", "*scoped_test.gormDB", "WithRollback", "WithClose"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("New panic = %q, want it to mention %q", msg, want)
		}
	}
	// WithCommit alone is no way to end a session that is not committed.
	msg = recoverString(func() {
		scoped.New(func(ctx context.Context) (*gormDB, error) { return &gormDB{}, nil },
			scoped.WithCommit(func(context.Context, *gormDB) error { return nil }))
	})
	if !strings.Contains(msg, "gormDB") {
		t.Fatalf("New with only WithCommit: panic %q, want one naming the type", msg)
	}
	if msg := recoverString(func() { scoped.New[*fakeTx](nil) }); !strings.HasPrefix(msg, "scoped: ") {
		t.Fatalf("New(nil) panic = %q", msg)
	}
}

func TestTeardownOptionOfWrongTypePanics(t *testing.T) {
	msg := recoverString(func() {
		scoped.New(func(ctx context.Context) (*fakeTx, error) { return &fakeTx{}, nil },
			scoped.WithCommit(func(context.Context, *fakeConn) error { return nil }))
	})
	for _, want := range []string{"scoped: ", "WithCommit[*scoped_test.fakeConn]", "ScopedSession[*scoped_test.fakeTx]"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("panic = %q, want it to mention %q", msg, want)
		}
	}
	for name, opt := range map[string]scoped.Option{
		"WithRollback": scoped.WithRollback(func(context.Context, *fakeConn) error { return nil }),
		"WithClose":    scoped.WithClose(func(context.Context, *fakeConn) error { return nil }),
	} {
		msg := recoverString(func() {
			scoped.New(func(ctx context.Context) (*fakeTx, error) { return &fakeTx{}, nil }, opt)
		})
		if !strings.Contains(msg, name) {
			t.Fatalf("%s of the wrong type: panic %q", name, msg)
		}
	}
}

func TestStatsCountEverySessionOutcome(t *testing.T) {
	errCreate := errors.New("create failed")
	errRollback := errors.New("rollback failed")
	errCommit := errors.New("commit failed")
	// Each Current takes the next behaviour.
	plan := []struct {
		createErr, commitErr, rollbackErr error
	}{
		{},                         // 1: committed
		{},                         // 2: rolled back
		{createErr: errCreate},     // 3: factory fails
		{rollbackErr: errRollback}, // 4: rollback fails
		{commitErr: errCommit},     // 5: commit fails
		{},                         // 6: still open
	}
	step := 0
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		p := plan[step]
		step++
		if p.createErr != nil {
			return nil, p.createErr
		}
		return &fakeTx{commitErr: p.commitErr, rollbackErr: p.rollbackErr}, nil
	}, scoped.WithTeardownErrorHook(nil))
	use := func() (context.Context, *scoped.Scope) {
		ctx, scope := scoped.Begin(context.Background())
		_, _ = r.Current(ctx)
		return ctx, scope
	}
	check := func(when string, want scoped.Stats) {
		t.Helper()
		if got := r.Stats(); got != want {
			t.Fatalf("%s: Stats = %+v, want %+v", when, got, want)
		}
	}
	check("start", scoped.Stats{})
	_, s := use()
	check("one open", scoped.Stats{Live: 1, Created: 1})
	_ = s.Commit()
	check("committed", scoped.Stats{Created: 1, Committed: 1})
	_, s = use()
	_ = s.Remove()
	check("rolled back", scoped.Stats{Created: 2, Committed: 1, RolledBack: 1})
	_, s = use()
	_ = s.Remove()
	check("factory failed", scoped.Stats{Created: 2, Committed: 1, RolledBack: 1, Failed: 1})
	_, s = use()
	_ = s.Remove()
	check("rollback failed", scoped.Stats{Created: 3, Committed: 1, RolledBack: 1, Failed: 2})
	_, s = use()
	_ = s.Commit()
	check("commit failed", scoped.Stats{Created: 4, Committed: 1, RolledBack: 1, Failed: 3})
	_, s = use()
	check("open again", scoped.Stats{Live: 1, Created: 5, Committed: 1, RolledBack: 1, Failed: 3})
	_ = s.Remove()
	check("end", scoped.Stats{Created: 5, Committed: 1, RolledBack: 2, Failed: 3})
}

func TestTeardownErrorHookSeesEveryError(t *testing.T) {
	errCommit := errors.New("commit failed")
	errRollback := errors.New("rollback failed")
	errClose := errors.New("close failed")
	sink := &errSink{}
	tx := func(name string, commitErr, rollbackErr error) *scoped.ScopedSession[*fakeTx] {
		return scoped.New(func(ctx context.Context) (*fakeTx, error) {
			return &fakeTx{name: name, commitErr: commitErr, rollbackErr: rollbackErr}, nil
		}, scoped.WithName(name), scoped.WithTeardownErrorHook(sink.hook))
	}
	conn := scoped.New(func(ctx context.Context) (*fakeConn, error) {
		return &fakeConn{name: "conn", closeErr: errClose}, nil
	}, scoped.WithTeardownErrorHook(sink.hook))
	committer, roller := tx("committer", errCommit, nil), tx("roller", nil, errRollback)

	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, conn, ctx)
	mustCurrent(t, committer, ctx)
	mustCurrent(t, roller, ctx)
	err := scope.Commit()
	for _, cause := range []error{errCommit, errRollback, errClose} {
		if !errors.Is(err, cause) {
			t.Errorf("Commit error %v lacks %v", err, cause)
		}
		found := false
		for _, e := range sink.list() {
			found = found || errors.Is(e, cause)
		}
		if !found {
			t.Errorf("hook never saw %v (got %v)", cause, sink.list())
		}
	}
	if n := len(sink.list()); n != 3 {
		t.Errorf("hook called %d times for 3 failing sessions", n)
	}
}

func TestDefaultTeardownErrorHookLogsWithSlog(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	defer slog.SetDefault(prev)

	errClose := errors.New("connection reset")
	r := scoped.New(func(ctx context.Context) (*fakeConn, error) {
		return &fakeConn{closeErr: errClose}, nil
	}, scoped.WithName("reports"))
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, r, ctx)
	if err := scope.Remove(); !errors.Is(err, errClose) {
		t.Fatalf("Remove = %v", err)
	}
	out := buf.String()
	for _, want := range []string{"level=ERROR", "reports", "connection reset"} {
		if !strings.Contains(out, want) {
			t.Fatalf("slog output %q lacks %q", out, want)
		}
	}
}

func TestScopedSessionRemoveEndsOnlyThatSession(t *testing.T) {
	rec := &recorder{}
	var callsA, callsB atomic.Int64
	a := txSession(rec, "A", &callsA)
	b := txSession(rec, "B", &callsB)
	ctx, scope := scoped.Begin(context.Background())
	a1 := mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)

	if err := a.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if a1.rollbacks.Load() != 1 {
		t.Fatal("ScopedSession.Remove did not roll back its session")
	}
	if a.Has(ctx) || !b.Has(ctx) {
		t.Fatalf("after A.Remove: A.Has %v, B.Has %v; want false, true", a.Has(ctx), b.Has(ctx))
	}
	if err := scope.Err(); err != nil {
		t.Fatalf("scope ended by ScopedSession.Remove: %v", err)
	}
	if err := a.Remove(ctx); err != nil {
		t.Fatalf("Remove without a session = %v, want nil", err)
	}
	a2 := mustCurrent(t, a, ctx)
	if a2 == a1 || callsA.Load() != 2 {
		t.Fatalf("Current after ScopedSession.Remove reused %p (calls %d), want a new session", a2, callsA.Load())
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"rollback A", "rollback A", "rollback B"}; !equal(rec.list(), want) {
		t.Fatalf("events %v, want %v", rec.list(), want)
	}
	if a1.rollbacks.Load() != 1 || a2.rollbacks.Load() != 1 {
		t.Fatal("a session was ended twice")
	}
}

func TestScopedSessionCommitCommitsThatSession(t *testing.T) {
	rec := &recorder{}
	var callsA, callsB atomic.Int64
	a := txSession(rec, "A", &callsA)
	b := txSession(rec, "B", &callsB)
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Has(ctx) || scope.Err() != nil {
		t.Fatal("after ScopedSession.Commit the session must be gone and the scope open")
	}
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"commit A", "rollback B"}; !equal(rec.list(), want) {
		t.Fatalf("events %v, want %v", rec.list(), want)
	}
	if st := a.Stats(); st.Committed != 1 || st.Live != 0 {
		t.Fatalf("Stats = %+v", st)
	}
}

func TestPanickingErrorHookDoesNotStopTeardown(t *testing.T) {
	baseline := scoped.LiveScopes()
	rec := &recorder{}
	var calls atomic.Int64
	a := txSession(rec, "A", &calls) // older: ended after B
	b := scoped.New(func(ctx context.Context) (*fakeConn, error) {
		return &fakeConn{name: "B", rec: rec, closeErr: errors.New("close failed")}, nil
	}, scoped.WithTeardownErrorHook(func(context.Context, error) { panic("hook exploded") }))
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, a, ctx)
	mustCurrent(t, b, ctx)

	// Whether Remove reports the hook's panic as an error or re-panics
	// once everything has ended is the implementation's choice; stopping
	// half way is not.
	_ = recoverString(func() { _ = scope.Remove() })
	if want := []string{"close B", "rollback A"}; !equal(rec.list(), want) {
		t.Fatalf("events %v, want %v: a panicking hook stopped the teardown of the other sessions", rec.list(), want)
	}
	if n := scoped.LiveScopes(); n != baseline {
		t.Fatalf("LiveScopes = %d after Remove, want %d", n, baseline)
	}
	again := make(chan error, 1)
	go func() { again <- scope.Remove() }()
	if err := waitFor(t, again, "second Remove to return"); err != nil {
		t.Fatalf("second Remove = %v", err)
	}
}
