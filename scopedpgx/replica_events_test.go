package scopedpgx

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/jackc/pgx/v5"
)

// routeLog records the routes of one unit's events, as an event hook.
type routeLog struct {
	mu     sync.Mutex
	routes map[scoped.EventKind]string
}

func (l *routeLog) hook(_ context.Context, e scoped.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.routes[e.Kind] = e.Route
}

// unitRoutes runs unit in a scope of its own on a NewTx with s's replica,
// and returns the route its Created event reported (before its first
// statement) and the one its end event reported.
func (s *replicaSetup) unitRoutes(t *testing.T, ctx context.Context, unit func(*scoped.ScopedSession[pgx.Tx], context.Context) error) (created, ended string) {
	t.Helper()
	l := &routeLog{routes: map[scoped.EventKind]string{}}
	txs := s.txs(scoped.WithEventHook(l.hook))
	if err := unit(txs, ctx); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.routes) != 2 {
		t.Fatalf("events %v, want Created and one end", l.routes)
	}
	created = l.routes[scoped.Created]
	delete(l.routes, scoped.Created)
	for _, r := range l.routes {
		ended = r
	}
	return created, ended
}

func (s *replicaSetup) readUnit(txs *scoped.ScopedSession[pgx.Tx], ctx context.Context) error {
	_, _, err := s.read(ctx, txs, 1)
	return err
}

func (s *replicaSetup) writeUnit(txs *scoped.ScopedSession[pgx.Tx], ctx context.Context) error {
	return s.write(ctx, txs, 1, 1)
}

// TestReplicaRoutesInEvents: with replicas, every event of a unit says
// where its transaction runs (Event.Route): the replica or the primary,
// and why a read-only unit ended on the primary. The Created event, sent
// before BEGIN (which travels with the first statement), says where the
// unit is sent; the end event where it ran.
func TestReplicaRoutesInEvents(t *testing.T) {
	dbtest.Postgres(t) // the proxies' pools read its user and database
	r := dbtest.NewReplicated(t)
	s := &replicaSetup{r: r, pp: proxyTo(t, r.Primary.DSN, 0), rp: proxyTo(t, r.Standby.DSN, 0)}
	s.primary, s.replica = s.pp.pool(t, 4), s.rp.pool(t, 4)
	s.table = r.CreateRowTable(t, "scopedpgx_routes")
	ctx := dbtest.Ctx(t)

	want := func(what, created, ended, wantCreated, wantEnded string) {
		t.Helper()
		if created != wantCreated || ended != wantEnded {
			t.Errorf("%s: routes %q then %q, want %q then %q", what, created, ended, wantCreated, wantEnded)
		}
	}
	c, e := s.unitRoutes(t, readOnly(ctx), s.readUnit)
	want("read-only unit", c, e, "replica 1", "replica 1")
	c, e = s.unitRoutes(t, ctx, s.writeUnit)
	want("write unit", c, e, "primary", "primary")
	serial := func(txs *scoped.ScopedSession[pgx.Tx], ctx context.Context) error {
		ctx, err := WithTxOptions(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.Serializable})
		if err != nil {
			return err
		}
		return s.readUnit(txs, ctx)
	}
	c, e = s.unitRoutes(t, ctx, serial)
	want("serializable read-only unit", c, e, "primary (serializable)", "primary (serializable)")

	t.Run("Lagging", func(t *testing.T) {
		s.r.SetApplyDelay(time.Hour) // released below, whatever happens
		t.Cleanup(func() { s.r.SetApplyDelay(0) })
		client := WithReadAfter(ctx, 0)
		if err := s.write(client, s.txs(), 2, 1); err != nil {
			t.Fatal(err)
		}
		pos := CommitPosition(client)
		s.r.AwaitStandby(t, "pg_last_wal_receive_lsn() >= $1::text::pg_lsn", pos) // received, not applied

		// Sent to the replica, moved to the primary by the check in BEGIN's pipeline.
		c, e := s.unitRoutes(t, readOnly(client), s.readUnit)
		want("read-only unit with a position the replica has not replayed", c, e,
			"replica 1", "primary (replica 1 has not replayed the position)")

		s.r.AwaitStandby(t, "$1::text IS NOT NULL AND pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn() AND now() - pg_last_xact_replay_timestamp() > interval '50 ms'", pos)
		lag := WithMaxReplicaLag(50 * time.Millisecond)
		l := &routeLog{routes: map[scoped.EventKind]string{}}
		txs := s.txs(lag, scoped.WithEventHook(l.hook))
		for i, w := range [][2]string{
			{"replica 1", "primary (replica 1 lags)"},
			// Skipped for ReplicaRecheck: the Created event says why already.
			{"primary (replica 1 lags)", "primary (replica 1 lags)"},
		} {
			clear(l.routes)
			if err := s.readUnit(txs, readOnly(ctx)); err != nil {
				t.Fatal(err)
			}
			want("read-only unit "+itoa(i)+" with a lagging replica", l.routes[scoped.Created], l.routes[scoped.Committed], w[0], w[1])
		}
	})

	t.Run("ReplicaStopped", func(t *testing.T) {
		l := &routeLog{routes: map[scoped.EventKind]string{}}
		txs := s.txs(scoped.WithEventHook(l.hook))
		if err := s.readUnit(txs, readOnly(ctx)); err != nil { // leaves an idle connection to the replica
			t.Fatal(err)
		}
		s.r.Standby.Stop(dbtest.Fast)
		for i := range 2 {
			clear(l.routes)
			if err := s.readUnit(txs, readOnly(ctx)); err != nil {
				t.Fatal(err)
			}
			c, e := l.routes[scoped.Created], l.routes[scoped.Committed]
			// The first unit is sent to the replica if the pool hands it
			// the idle connection the stop closed, whose BEGIN then fails;
			// not if the pool found it closed and failed to dial one.
			// The next unit skips the replica (ReplicaRecheck).
			if i == 0 && c == "replica 1" {
				c = "primary (replica 1 down)"
			}
			want("read-only unit "+itoa(i)+" after the replica stopped", c, e, "primary (replica 1 down)", "primary (replica 1 down)")
		}
	})
}
