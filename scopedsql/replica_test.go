package scopedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// replicas is a primary and a streaming replica of the test's own, each
// behind a proxy that counts round trips, with a table (id int primary
// key, n int) that the replica has replayed.
type replicas struct {
	r                *dbtest.Replicated
	primary, replica *sql.DB // through the proxies
	pp, rp           *tripProxy
	table            string
}

// TestReplica runs the replica tests as subtests, on one primary and hot
// standby made for them (seconds to make).
func TestReplica(t *testing.T) {
	r := dbtest.NewReplicated(t)
	s := &replicas{r: r, table: r.CreateRowTable(t, "scopedsql_replica")}
	s.pp, s.primary = newTripProxy(t, r.Primary.DSN)
	s.rp, s.replica = newTripProxy(t, r.Standby.DSN)

	t.Run("RoutesReadOnlyUnits", s.testRoutes)
	t.Run("RoutesInEvents", s.testEvents)
	t.Run("ReadYourWritesWithLag", s.testReadYourWritesWithLag)
	t.Run("ReadYourWritesUnderLoad", s.testReadYourWritesUnderLoad)
	t.Run("ReplicaWait", s.testWait)
	t.Run("HTTPReadYourWrites", s.testHTTP)
	t.Run("LaggingReplicaSkipped", s.testLaggingSkipped)
	t.Run("Measure", s.measure)
	// Last: they stop the replica.
	t.Run("ReplicaStoppedMidLoad", func(t *testing.T) {
		s.testStoppedMidLoad(t, dbtest.Fast)
		r.Standby.Start()
	})
	t.Run("ReplicaCrashedMidLoad", func(t *testing.T) { s.testStoppedMidLoad(t, dbtest.Immediate) })
}

// readOnly returns ctx, outside any scope, marking the unit begun with it
// read-only.
func readOnly(t testing.TB, ctx context.Context) context.Context {
	ctx, err := scopedsql.WithTxOptions(ctx, sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

func (s *replicas) txs(opts ...scopedsql.Option) *scoped.ScopedSession[*sql.Tx] {
	return scopedsql.NewTx(s.primary, nil, append([]scopedsql.Option{scopedsql.WithReplicas(s.replica)}, opts...)...)
}

func (s *replicas) primaryPosition(t testing.TB) scopedsql.Position {
	t.Helper()
	var lsn string
	if err := s.primary.QueryRowContext(dbtest.Ctx(t), "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	p, err := scopedsql.ParsePosition(lsn)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// read runs a unit reading row id (-1: none), and says where it ran.
func (s *replicas) read(ctx context.Context, txs *scoped.ScopedSession[*sql.Tx], id int, opts ...scoped.RunOption) (n int, onReplica bool, err error) {
	err = scoped.Run(ctx, func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, "SELECT coalesce((SELECT n FROM "+s.table+" WHERE id = $1), -1), pg_is_in_recovery()", id).
			Scan(&n, &onReplica)
	}, opts...)
	return n, onReplica, err
}

// write sets row id's n in a unit of its own.
func (s *replicas) write(ctx context.Context, txs *scoped.ScopedSession[*sql.Tx], id, n int) error {
	return scoped.Run(ctx, func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO "+s.table+" (id, n) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET n = excluded.n", id, n)
		return err
	})
}

// trips returns the round trips f cost on the primary and on the replica.
func (s *replicas) trips(f func()) (primary, replica int64) {
	p0, r0 := s.pp.trips.Load(), s.rp.trips.Load()
	f()
	return s.pp.trips.Load() - p0, s.rp.trips.Load() - r0
}

// testRoutes: a read-only unit runs on the replica, any other on the
// primary, each at the round trips of the same unit without replicas;
// checking a position costs one round trip on the replica, and yielding
// one costs one on the primary.
func (s *replicas) testRoutes(t *testing.T) {
	txs := s.txs()
	plain := scopedsql.NewTx(s.primary, nil)
	ctx := dbtest.Ctx(t)
	base, _ := s.trips(func() {
		if _, on, err := s.read(ctx, plain, 1); err != nil || on {
			t.Fatalf("unit without replicas: on replica %v, err %v", on, err)
		}
	})
	p, r := s.trips(func() {
		if _, on, err := s.read(readOnly(t, ctx), txs, 1); err != nil || !on {
			t.Fatalf("read-only unit: on replica %v, err %v; want the replica", on, err)
		}
	})
	t.Logf("round trips: a unit without replicas %d; a read-only unit %d on the replica, %d on the primary", base, r, p)
	if r != base || p != 0 {
		t.Errorf("read-only unit: %d round trips on the replica, %d on the primary; want %d and 0", r, p, base)
	}
	p, r = s.trips(func() {
		if _, on, err := s.read(ctx, txs, 1); err != nil || on {
			t.Fatalf("unit: on replica %v, err %v; want the primary", on, err)
		}
	})
	if p != base || r != 0 {
		t.Errorf("unit not read-only: %d round trips on the primary, %d on the replica; want %d and 0", p, r, base)
	}

	// A write that yields its position: one round trip more, on the
	// primary, after the commit. Without WithReadAfter, none.
	var writeBase int64
	for _, client := range []context.Context{ctx, scopedsql.WithReadAfter(ctx, 0)} {
		p, r := s.trips(func() {
			if err := s.write(client, txs, 10, 1); err != nil {
				t.Fatal(err)
			}
		})
		pos := scopedsql.CommitPosition(client)
		t.Logf("write unit (position %s): %d round trips on the primary", pos, p)
		if client == ctx {
			writeBase = p
		} else if p != writeBase+1 || pos == 0 {
			t.Errorf("write with WithReadAfter: %d round trips, position %s; want %d and a position", p, pos, writeBase+1)
		}
		if r != 0 {
			t.Errorf("write unit: %d round trips on the replica", r)
		}
	}

	// A read given a position the replica has replayed: on the replica,
	// one round trip more (the check), none on the primary; it yields no
	// position.
	client := scopedsql.WithReadAfter(ctx, 0)
	if err := s.write(client, txs, 11, 1); err != nil {
		t.Fatal(err)
	}
	pos := scopedsql.CommitPosition(client)
	s.r.AwaitReplayed(t, pos)
	p, r = s.trips(func() {
		if n, on, err := s.read(readOnly(t, client), txs, 11); err != nil || !on || n != 1 {
			t.Fatalf("read with a replayed position: n %d on replica %v, err %v; want the replica's 1", n, on, err)
		}
	})
	if r != base+1 || p != 0 {
		t.Errorf("read with a replayed position: %d round trips on the replica, %d on the primary; want %d and 0", r, p, base+1)
	}
	if scopedsql.CommitPosition(client) != pos {
		t.Errorf("a read-only unit moved the position from %s to %s", pos, scopedsql.CommitPosition(client))
	}

	// A read-only factory routes all its units, unless the unit says it is
	// not read-only.
	ro := scopedsql.NewTx(s.primary, &sql.TxOptions{ReadOnly: true}, scopedsql.WithReplicas(s.replica))
	if _, on, err := s.read(ctx, ro, 1); err != nil || !on {
		t.Errorf("unit of a read-only factory: on replica %v, err %v; want the replica", on, err)
	}
	// A REPEATABLE READ one with a position stays on the primary; a
	// SERIALIZABLE one always does (a hot standby refuses it).
	rr := scopedsql.NewTx(s.primary, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}, scopedsql.WithReplicas(s.replica))
	if _, on, err := s.read(ctx, rr, 1); err != nil || !on {
		t.Errorf("repeatable read read-only unit: on replica %v, err %v; want the replica", on, err)
	}
	if _, on, err := s.read(scopedsql.WithReadAfter(ctx, 1), rr, 1); err != nil || on {
		t.Errorf("repeatable read read-only unit with a position: on replica %v, err %v; want the primary", on, err)
	}
	serial := scopedsql.NewTx(s.primary, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelSerializable}, scopedsql.WithReplicas(s.replica))
	if _, on, err := s.read(ctx, serial, 1); err != nil || on {
		t.Errorf("serializable read-only unit: on replica %v, err %v; want the primary", on, err)
	}
}

// testEvents: every event of a unit says where it ran (Event.Route).
func (s *replicas) testEvents(t *testing.T) {
	var mu sync.Mutex
	var routes []string
	hook := scoped.WithEventHook(func(_ context.Context, e scoped.Event) {
		mu.Lock()
		defer mu.Unlock()
		routes = append(routes, e.Kind.String()+" "+e.Route)
	})
	txs := s.txs(hook)
	ctx := dbtest.Ctx(t)
	if _, _, err := s.read(readOnly(t, ctx), txs, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.read(ctx, txs, 1); err != nil {
		t.Fatal(err)
	}
	// A position no replica has replayed.
	if _, _, err := s.read(readOnly(t, scopedsql.WithReadAfter(ctx, s.primaryPosition(t)+1<<40)), txs, 1); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"created replica 1", "committed replica 1", "created primary", "committed primary",
		"created primary (replica 1 has not replayed the position)", "committed primary (replica 1 has not replayed the position)"}
	if strings.Join(routes, "; ") != strings.Join(want, "; ") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(routes, "\n"), strings.Join(want, "\n"))
	}
}

// testReadYourWritesWithLag: with the replica applying commits late, a
// read that carries the position of the client's write runs on the
// primary and sees it; once the replica has replayed it, the same read
// runs on the replica. A read without the position runs on the replica
// and does not see the write: the test can see a stale read.
func (s *replicas) testReadYourWritesWithLag(t *testing.T) {
	s.r.SetApplyDelay(time.Hour) // released below, whatever happens
	t.Cleanup(func() { s.r.SetApplyDelay(0) })
	txs := s.txs()
	client := scopedsql.WithReadAfter(dbtest.Ctx(t), 0)
	if err := s.write(client, txs, 100, 1); err != nil {
		t.Fatal(err)
	}
	pos := scopedsql.CommitPosition(client)
	if pos == 0 {
		t.Fatal("no commit position after a unit that wrote")
	}
	s.r.AwaitStandby(t, "pg_last_wal_receive_lsn() >= $1::text::pg_lsn", pos) // received, not applied

	n, on, err := s.read(readOnly(t, dbtest.Ctx(t)), txs, 100)
	if err != nil || !on || n != -1 {
		t.Fatalf("read without the position: n %d on replica %v, err %v; want the replica's stale -1", n, on, err)
	}
	var p, r int64
	p, r = s.trips(func() {
		n, on, err = s.read(readOnly(t, client), txs, 100)
	})
	if err != nil || on || n != 1 {
		t.Fatalf("read with the position: n %d on replica %v, err %v; want the primary's 1", n, on, err)
	}
	t.Logf("round trips of a read whose position the replica has not replayed: %d on the replica, %d on the primary", r, p)

	s.r.SetApplyDelay(0)
	s.r.AwaitReplayed(t, pos)
	if n, on, err = s.read(readOnly(t, client), txs, 100); err != nil || !on || n != 1 {
		t.Fatalf("read with a replayed position: n %d on replica %v, err %v; want the replica's 1", n, on, err)
	}
}

// testReadYourWritesUnderLoad: clients write their row and read it back
// at once, concurrently, each carrying its position: no read is stale,
// while the replica serves the reads whose position it has replayed.
func (s *replicas) testReadYourWritesUnderLoad(t *testing.T) {
	s.clients(t, s.txs()).UnderLoad(t, 8, 40)
}

// clients are clients whose units txs runs.
func (s *replicas) clients(t testing.TB, txs *scoped.ScopedSession[*sql.Tx]) dbtest.ReadYourWrites {
	return dbtest.ReadYourWrites{
		Client: func(ctx context.Context) context.Context { return scopedsql.WithReadAfter(ctx, 0) },
		Write:  func(client context.Context, id, n int) error { return s.write(client, txs, id, n) },
		ReadNext: func(ctx, client context.Context, id int) (int, bool, error) {
			next := scopedsql.WithReadAfter(ctx, scopedsql.CommitPosition(client))
			return s.read(readOnly(t, next), txs, id)
		},
	}
}

// testWait: with WithReplicaWait, a read whose position the replica
// applies within the wait runs on the replica, in the check's one round
// trip; one it does not apply within the wait goes to the primary.
func (s *replicas) testWait(t *testing.T) {
	t.Cleanup(func() { s.r.SetApplyDelay(0) })
	for _, c := range []struct {
		delay, wait time.Duration
		onReplica   bool
	}{
		{200 * time.Millisecond, dbtest.Bound, true},
		{time.Hour, 50 * time.Millisecond, false},
	} {
		s.r.SetApplyDelay(c.delay)
		txs := s.txs(scopedsql.WithReplicaWait(c.wait))
		client := scopedsql.WithReadAfter(dbtest.Ctx(t), 0)
		if err := s.write(client, txs, 500, int(c.delay/time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		var n int
		var on bool
		var err error
		p, r := s.trips(func() { n, on, err = s.read(readOnly(t, client), txs, 500) })
		if err != nil || n != int(c.delay/time.Millisecond) || on != c.onReplica {
			t.Fatalf("apply delay %v, wait %v: n %d on replica %v, err %v; want %d on replica %v", c.delay, c.wait, n, on, err, c.delay/time.Millisecond, c.onReplica)
		}
		t.Logf("apply delay %v, wait %v: %d round trips on the replica, %d on the primary", c.delay, c.wait, r, p)
		if c.onReplica && p != 0 {
			t.Errorf("apply delay %v, wait %v: %d round trips on the primary, want 0", c.delay, c.wait, p)
		}
	}
}

// testLaggingSkipped: a replica that lags past WithMaxReplicaLag does not
// serve a read-only unit, and is then skipped without being asked; the
// routes of both units say why.
func (s *replicas) testLaggingSkipped(t *testing.T) {
	s.r.SetApplyDelay(time.Hour)
	t.Cleanup(func() { s.r.SetApplyDelay(0) })
	var mu sync.Mutex
	var routes []string
	hook := scoped.WithEventHook(func(_ context.Context, e scoped.Event) {
		if e.Kind == scoped.Committed {
			mu.Lock()
			defer mu.Unlock()
			routes = append(routes, e.Route)
		}
	})
	txs := s.txs(scopedsql.WithMaxReplicaLag(50*time.Millisecond), hook)
	ctx := dbtest.Ctx(t)
	if err := s.write(ctx, txs, 300, 1); err != nil {
		t.Fatal(err)
	}
	pos := s.primaryPosition(t)
	s.r.AwaitStandby(t, "pg_last_wal_receive_lsn() >= $1::text::pg_lsn", pos)
	s.r.AwaitStandby(t, "$1::text IS NOT NULL AND pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn() AND now() - pg_last_xact_replay_timestamp() > interval '50 ms'", pos)
	if n, on, err := s.read(readOnly(t, ctx), txs, 300); err != nil || on || n != 1 {
		t.Fatalf("read with a lagging replica: n %d on replica %v, err %v; want the primary's 1", n, on, err)
	}
	_, r := s.trips(func() {
		if _, on, err := s.read(readOnly(t, ctx), txs, 300); err != nil || on {
			t.Fatalf("next read: on replica %v, err %v; want the primary", on, err)
		}
	})
	if r != 0 {
		t.Errorf("the lagging replica was asked again at once: %d round trips", r)
	}
	mu.Lock()
	defer mu.Unlock()
	// The write's, then the reads'.
	if got := strings.Join(routes, "; "); got != "primary; primary (replica 1 lags); primary (replica 1 lags)" {
		t.Errorf("routes: %s; want primary, then primary (replica 1 lags) twice", got)
	}
}

// testHTTP: over HTTP, with GET units read-only and the position in a
// cookie, a client reads its own write at once while the replica applies
// it late; a client without the cookie reads the replica's stale row.
func (s *replicas) testHTTP(t *testing.T) {
	s.r.SetApplyDelay(time.Hour)
	t.Cleanup(func() { s.r.SetApplyDelay(0) })
	txs := s.txs()
	app := dbtest.RowHandler(func(ctx context.Context) error {
		tx, err := scoped.Current[*sql.Tx](ctx)
		if err == nil {
			_, err = tx.ExecContext(ctx, "INSERT INTO "+s.table+" (id, n) VALUES (400, 1)")
		}
		return err
	}, func(ctx context.Context) (n int, on bool, err error) {
		tx, err := scoped.Current[*sql.Tx](ctx)
		if err == nil {
			err = tx.QueryRowContext(ctx, "SELECT coalesce((SELECT n FROM "+s.table+" WHERE id = 400), -1), pg_is_in_recovery()").Scan(&n, &on)
		}
		return n, on, err
	})
	h := scopedsql.ReadYourWrites("rp")(scopedhttp.ReadOnlySafeMethods(
		scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(app)))
	do, client := dbtest.ServeClients(t, h)
	dbtest.ReadsOwnWrite(t, do, client)
	s.r.SetApplyDelay(0)
	s.r.AwaitReplayed(t, s.primaryPosition(t))
	if got := do(client, http.MethodGet); got != "1 true" {
		t.Errorf("GET with the cookie, replayed: %q, want the replica's \"1 true\"", got)
	}
}

// testStoppedMidLoad: readers run read-only units while the replica is
// stopped. No unit fails to begin: once the replica is gone, units begin
// on the primary. A unit whose transaction was running on the replica
// when it stopped loses its connection, as on a primary that stops; a
// read-only unit is safe to run again, and the readers do so
// (scoped.WithRetry with a classifier that accepts a lost connection):
// then no read-only unit fails.
func (s *replicas) testStoppedMidLoad(t *testing.T, mode dbtest.StopMode) {
	txs := s.txs()
	var retried atomic.Int64
	lost := func(err error) bool {
		if isConnLost(err) {
			retried.Add(1)
			return true
		}
		return false
	}
	l := s.r.StopUnderReads(mode, 8, func(r int) (bool, error) {
		_, on, err := s.read(readOnly(t, context.Background()), txs, r, scoped.WithRetry(3, lost))
		return on, err
	})
	t.Logf("%d read-only units: %d on the replica, %d on the primary, %d run again after losing the replica, %d failed",
		l.Done, l.OnReplica, l.OnPrimary, retried.Load(), len(l.Failed))
	l.Check(t)
	if n := s.replica.Stats().InUse; n != 0 {
		t.Errorf("%d replica connections left in use", n)
	}
}

// isConnLost reports whether err says the connection was lost, as lib/pq
// and database/sql report it when the server stops or crashes.
func isConnLost(err error) bool {
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		c := st.SQLState()
		return strings.HasPrefix(c, "08") || strings.HasPrefix(c, "57P")
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "bad connection") || strings.Contains(err.Error(), "connection reset") ||
		strings.Contains(err.Error(), "broken pipe") || strings.Contains(err.Error(), "connection refused")
}
