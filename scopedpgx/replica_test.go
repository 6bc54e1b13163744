package scopedpgx

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/shared/txopts"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// replicaSetup is a primary and a streaming replica of the test's own,
// each behind a proxy that counts round trips, with a table (id int
// primary key, n int) on the primary that the replica has replayed.
type replicaSetup struct {
	r                *dbtest.Replicated
	primary, replica *pgxpool.Pool
	pp, rp           *proxy // their proxies
	table            string
}

// proxyTo is newProxy to the server at dsn.
func proxyTo(t testing.TB, dsn string, delay time.Duration) *proxy {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, delay: delay, conns: map[net.Conn]struct{}{},
		target: net.JoinHostPort(cfg.ConnConfig.Host, itoa(int(cfg.ConnConfig.Port)))}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// TestReplica runs the replica tests as subtests, on one primary and hot
// standby made for them (seconds to make).
func TestReplica(t *testing.T) {
	dbtest.Postgres(t) // the proxies' pools read its user and database
	r := dbtest.NewReplicated(t)
	s := &replicaSetup{r: r, pp: proxyTo(t, r.Primary.DSN, 0), rp: proxyTo(t, r.Standby.DSN, 0)}
	s.primary, s.replica = s.pp.pool(t, 16), s.rp.pool(t, 16)
	s.table = r.CreateRowTable(t, "scopedpgx_replica")

	t.Run("RoutesReadOnlyUnits", s.testRoutes)
	t.Run("ReadYourWritesWithLag", s.testReadYourWritesWithLag)
	t.Run("ReadYourWritesUnderLoad", s.testReadYourWritesUnderLoad)
	t.Run("ReplicaWait", s.testWait)
	t.Run("HTTPReadYourWrites", s.testHTTP)
	t.Run("ReadYourWritesAcrossDrivers", s.testAcrossDrivers)
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
// read-only, as scopedhttp.ReadOnlySafeMethods does.
func readOnly(ctx context.Context) context.Context {
	ctx, err := txopts.With(ctx, txopts.Options{ReadOnly: txopts.On})
	if err != nil {
		panic(err)
	}
	return ctx
}

func (s *replicaSetup) txs(opts ...Option) *scoped.ScopedSession[pgx.Tx] {
	return NewTx(s.primary, pgx.TxOptions{}, append([]Option{WithReplicas(s.replica)}, opts...)...)
}

func (s *replicaSetup) primaryPosition(t testing.TB) Position {
	t.Helper()
	var lsn string
	if err := s.primary.QueryRow(dbtest.Ctx(t), "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	p, err := ParsePosition(lsn)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// read runs a read-only unit reading row id, and says where it ran.
func (s *replicaSetup) read(ctx context.Context, txs *scoped.ScopedSession[pgx.Tx], id int) (n int, onReplica bool, err error) {
	err = scoped.Run(ctx, func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT coalesce((SELECT n FROM "+s.table+" WHERE id = $1), -1), pg_is_in_recovery()", id).
			Scan(&n, &onReplica)
	})
	return n, onReplica, err
}

// write sets row id's n in a unit of its own.
func (s *replicaSetup) write(ctx context.Context, txs *scoped.ScopedSession[pgx.Tx], id, n int) error {
	return scoped.Run(ctx, func(ctx context.Context) error {
		tx, err := txs.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO "+s.table+" (id, n) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET n = excluded.n", id, n)
		return err
	})
}

// testRoutes: a read-only unit runs on the replica, any other on the
// primary, each at the round trips of a unit without replicas (one for
// the statement with BEGIN, one for COMMIT).
func (s *replicaSetup) testRoutes(t *testing.T) {
	txs := s.txs()
	ctx := dbtest.Ctx(t)
	for i := range 3 { // the first units prepare their statements
		if _, on, err := s.read(readOnly(ctx), txs, 1); err != nil || !on {
			t.Fatalf("read-only unit %d: on replica %v, err %v; want the replica", i, on, err)
		}
		if _, on, err := s.read(ctx, txs, 1); err != nil || on {
			t.Fatalf("unit %d: on replica %v, err %v; want the primary", i, on, err)
		}
	}
	p0, r0 := s.pp.roundTrips.Load(), s.rp.roundTrips.Load()
	if _, _, err := s.read(readOnly(ctx), txs, 1); err != nil {
		t.Fatal(err)
	}
	p1, r1 := s.pp.roundTrips.Load(), s.rp.roundTrips.Load()
	if _, _, err := s.read(ctx, txs, 1); err != nil {
		t.Fatal(err)
	}
	p2, r2 := s.pp.roundTrips.Load(), s.rp.roundTrips.Load()
	t.Logf("round trips: read-only unit %d on the replica, %d on the primary; other unit %d on the primary, %d on the replica",
		r1-r0, p1-p0, p2-p1, r2-r1)
	if r1-r0 != 2 || p1-p0 != 0 || p2-p1 != 2 || r2-r1 != 0 {
		t.Errorf("want 2 round trips on the unit's server and none on the other")
	}

	// A write that yields its position costs no round trip more: the
	// position is read in the COMMIT's pipeline.
	for _, client := range []context.Context{ctx, WithReadAfter(ctx, 0)} {
		var trips int64
		for i := range 3 { // the first units prepare their statements
			p0 := s.pp.roundTrips.Load()
			if err := s.write(client, txs, 10, i); err != nil {
				t.Fatal(err)
			}
			trips = s.pp.roundTrips.Load() - p0
		}
		if trips != 2 || (CommitPosition(client) == 0) != (client == ctx) {
			t.Errorf("write unit: %d round trips, position %s; want 2, and a position only with WithReadAfter", trips, CommitPosition(client))
		}
	}

	// A read-only unit yields no position, wherever it ran.
	for _, txs := range []*scoped.ScopedSession[pgx.Tx]{
		NewTx(s.primary, pgx.TxOptions{AccessMode: pgx.ReadOnly}),
		txs,
	} {
		client := WithReadAfter(readOnly(ctx), 0)
		if _, _, err := s.read(client, txs, 1); err != nil || CommitPosition(client) != 0 {
			t.Errorf("read-only unit: err %v, position %s; want none", err, CommitPosition(client))
		}
	}

	// A read-only transaction factory routes all its units.
	ro := NewTx(s.primary, pgx.TxOptions{AccessMode: pgx.ReadOnly}, WithReplicas(s.replica))
	if _, on, err := s.read(ctx, ro, 1); err != nil || !on {
		t.Errorf("unit of a read-only factory: on replica %v, err %v; want the replica", on, err)
	}
	// Unless the unit says it is not read-only.
	rw, err := txopts.With(ctx, txopts.Options{ReadOnly: txopts.Off})
	if err != nil {
		t.Fatal(err)
	}
	if _, on, err := s.read(rw, ro, 1); err != nil || on {
		t.Errorf("unit set read-write: on replica %v, err %v; want the primary", on, err)
	}
	// A REPEATABLE READ one with a position stays on the primary: its
	// snapshot would be taken as the check began.
	rr := NewTx(s.primary, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, WithReplicas(s.replica))
	if _, on, err := s.read(ctx, rr, 1); err != nil || !on {
		t.Errorf("repeatable read read-only unit: on replica %v, err %v; want the replica", on, err)
	}
	if _, on, err := s.read(WithReadAfter(ctx, 1), rr, 1); err != nil || on {
		t.Errorf("repeatable read read-only unit with a position: on replica %v, err %v; want the primary", on, err)
	}
	// A SERIALIZABLE one stays on the primary: a hot standby refuses it.
	serial := NewTx(s.primary, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.Serializable}, WithReplicas(s.replica))
	if _, on, err := s.read(ctx, serial, 1); err != nil || on {
		t.Errorf("serializable read-only unit: on replica %v, err %v; want the primary", on, err)
	}
}

// testReadYourWritesWithLag: with the replica applying commits late, a
// read that carries the position of the client's write runs on the
// primary and sees it, at the round trips a replica in time would cost
// plus the replica's ROLLBACK; once the replica has replayed it, the same
// read runs on the replica. A read without the position runs on the
// replica and does not see the write: the test can see a stale read.
func (s *replicaSetup) testReadYourWritesWithLag(t *testing.T) {
	s.r.SetApplyDelay(time.Hour) // released below, whatever happens
	t.Cleanup(func() { s.r.SetApplyDelay(0) })
	txs := s.txs()
	client := WithReadAfter(dbtest.Ctx(t), 0)
	if err := s.write(client, txs, 100, 1); err != nil {
		t.Fatal(err)
	}
	pos := CommitPosition(client)
	if pos == 0 {
		t.Fatal("no commit position after a unit that wrote")
	}
	s.r.AwaitStandby(t, "pg_last_wal_receive_lsn() >= $1::text::pg_lsn", pos) // received, not applied

	n, on, err := s.read(readOnly(dbtest.Ctx(t)), txs, 100)
	if err != nil || !on || n != -1 {
		t.Fatalf("read without the position: n %d on replica %v, err %v; want the replica's stale -1", n, on, err)
	}
	r0, p0 := s.rp.roundTrips.Load(), s.pp.roundTrips.Load()
	n, on, err = s.read(readOnly(client), txs, 100)
	if err != nil || on || n != 1 {
		t.Fatalf("read with the position: n %d on replica %v, err %v; want the primary's 1", n, on, err)
	}
	t.Logf("round trips of a read whose position the replica has not replayed: %d on the replica, %d on the primary",
		s.rp.roundTrips.Load()-r0, s.pp.roundTrips.Load()-p0)
	if CommitPosition(client) != pos {
		t.Errorf("a read-only unit moved the position from %s to %s", pos, CommitPosition(client))
	}

	s.r.SetApplyDelay(0)
	s.r.AwaitReplayed(t, pos)
	// The first read on the connection the failed check ran on prepares
	// its statements again: pgx forgets those of a batch that failed.
	for i := range 2 {
		r0, p0 = s.rp.roundTrips.Load(), s.pp.roundTrips.Load()
		n, on, err = s.read(readOnly(client), txs, 100)
		if err != nil || !on || n != 1 {
			t.Fatalf("read with a replayed position: n %d on replica %v, err %v; want the replica's 1", n, on, err)
		}
		t.Logf("round trips of read %d with a replayed position: %d on the replica, %d on the primary", i, s.rp.roundTrips.Load()-r0, s.pp.roundTrips.Load()-p0)
	}
	if r, p := s.rp.roundTrips.Load()-r0, s.pp.roundTrips.Load()-p0; r != 2 || p != 0 {
		t.Errorf("read with a replayed position: %d round trips on the replica, %d on the primary; want 2 and 0", r, p)
	}
}

// testReadYourWritesUnderLoad: clients write their row and read it back
// at once, concurrently, each carrying its position: no read is stale,
// while the replica serves the reads whose position it has replayed.
func (s *replicaSetup) testReadYourWritesUnderLoad(t *testing.T) {
	s.clients(s.txs()).UnderLoad(t, 8, 40)
}

// clients are clients whose units txs runs.
func (s *replicaSetup) clients(txs *scoped.ScopedSession[pgx.Tx]) dbtest.ReadYourWrites {
	return dbtest.ReadYourWrites{
		Client: func(ctx context.Context) context.Context { return WithReadAfter(ctx, 0) },
		Write:  func(client context.Context, id, n int) error { return s.write(client, txs, id, n) },
		ReadNext: func(ctx, client context.Context, id int) (int, bool, error) {
			return s.read(readOnly(WithReadAfter(ctx, CommitPosition(client))), txs, id)
		},
	}
}

// testLaggingSkipped: a replica that lags past WithMaxReplicaLag does not
// serve a read-only unit, and is then skipped without being asked.
func (s *replicaSetup) testLaggingSkipped(t *testing.T) {
	s.r.SetApplyDelay(time.Hour)
	t.Cleanup(func() { s.r.SetApplyDelay(0) })
	txs := s.txs(WithMaxReplicaLag(50 * time.Millisecond))
	ctx := dbtest.Ctx(t)
	if err := s.write(ctx, txs, 300, 1); err != nil {
		t.Fatal(err)
	}
	pos := s.primaryPosition(t)
	s.r.AwaitStandby(t, "pg_last_wal_receive_lsn() >= $1::text::pg_lsn", pos)
	// Lagging: received more than it replayed, last replay older than the bound.
	s.r.AwaitStandby(t, "$1::text IS NOT NULL AND pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn() AND now() - pg_last_xact_replay_timestamp() > interval '50 ms'", pos)
	if n, on, err := s.read(readOnly(ctx), txs, 300); err != nil || on || n != 1 {
		t.Fatalf("read with a lagging replica: n %d on replica %v, err %v; want the primary's 1", n, on, err)
	}
	r0 := s.rp.roundTrips.Load()
	if _, on, err := s.read(readOnly(ctx), txs, 300); err != nil || on {
		t.Fatalf("next read: on replica %v, err %v; want the primary", on, err)
	}
	if r := s.rp.roundTrips.Load() - r0; r != 0 {
		t.Errorf("the lagging replica was asked again at once: %d round trips", r)
	}
}

// testStoppedMidLoad: readers run read-only units while the replica is
// stopped: none fails; after the stop the primary serves them.
func (s *replicaSetup) testStoppedMidLoad(t *testing.T, mode dbtest.StopMode) {
	txs := s.txs()
	l := s.r.StopUnderReads(mode, 8, func(r int) (bool, error) {
		_, on, err := s.read(readOnly(context.Background()), txs, r)
		return on, err
	})
	t.Logf("%d read-only units: %d on the replica, %d on the primary, %d failed", l.Done, l.OnReplica, l.OnPrimary, len(l.Failed))
	l.Check(t)
	if n := s.replica.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d replica connections left acquired", n)
	}
}

// testHTTP: over HTTP, with GET units read-only and the position in a
// cookie, a client reads its own write at once while the replica applies
// it late; a client without the cookie reads the replica's stale row.
func (s *replicaSetup) testHTTP(t *testing.T) {
	s.r.SetApplyDelay(time.Hour)
	t.Cleanup(func() { s.r.SetApplyDelay(0) })
	txs := s.txs()
	app := dbtest.RowHandler(func(ctx context.Context) error {
		tx, err := scoped.Current[pgx.Tx](ctx)
		if err == nil {
			_, err = tx.Exec(ctx, "INSERT INTO "+s.table+" (id, n) VALUES (400, 1)")
		}
		return err
	}, func(ctx context.Context) (n int, on bool, err error) {
		tx, err := scoped.Current[pgx.Tx](ctx)
		if err == nil {
			err = tx.QueryRow(ctx, "SELECT coalesce((SELECT n FROM "+s.table+" WHERE id = 400), -1), pg_is_in_recovery()").Scan(&n, &on)
		}
		return n, on, err
	})
	h := ReadYourWrites("rp")(scopedhttp.ReadOnlySafeMethods(
		scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(app)))
	do, client := dbtest.ServeClients(t, h)
	dbtest.ReadsOwnWrite(t, do, client)
	s.r.SetApplyDelay(0)
	s.r.AwaitReplayed(t, s.primaryPosition(t))
	if got := do(client, http.MethodGet); got != "1 true" {
		t.Errorf("GET with the cookie, replayed: %q, want the replica's \"1 true\"", got)
	}
}

// testWait: with WithReplicaWait, a read whose position the replica
// applies within the wait runs on the replica, at the round trips of a
// replica in time; one it does not apply within the wait goes to the
// primary.
func (s *replicaSetup) testWait(t *testing.T) {
	t.Cleanup(func() { s.r.SetApplyDelay(0) })
	for _, c := range []struct {
		delay, wait time.Duration
		onReplica   bool
	}{
		{200 * time.Millisecond, testkit.Bound, true},
		{time.Hour, 50 * time.Millisecond, false},
	} {
		s.r.SetApplyDelay(c.delay)
		txs := s.txs(WithReplicaWait(c.wait))
		client := WithReadAfter(dbtest.Ctx(t), 0)
		for i := 1; i <= 2; i++ { // the first read prepares its statements
			if err := s.write(client, txs, 500, i); err != nil {
				t.Fatal(err)
			}
			r0, p0 := s.rp.roundTrips.Load(), s.pp.roundTrips.Load()
			n, on, err := s.read(readOnly(client), txs, 500)
			r, p := s.rp.roundTrips.Load()-r0, s.pp.roundTrips.Load()-p0
			if err != nil || n != i || on != c.onReplica {
				t.Fatalf("apply delay %v, wait %v: n %d on replica %v, err %v; want %d on replica %v", c.delay, c.wait, n, on, err, i, c.onReplica)
			}
			if c.onReplica && i == 2 && (r != 2 || p != 0) {
				t.Errorf("apply delay %v, wait %v: %d round trips on the replica, %d on the primary; want 2 and 0", c.delay, c.wait, r, p)
			}
		}
	}
}
