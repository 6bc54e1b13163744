package scopedpgx

import (
	"context"
	"slices"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestConnIsPinnedForTheScope(t *testing.T) {
	pool := newPool(t, 4)
	r := NewConn(pool)
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	a, err := r.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("two Current calls in one scope returned different connections")
	}
	if err := scope.Commit(); err != nil { // a connection is not committable: it is just released
		t.Fatal(err)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired", n)
	}
	if got, want := r.Stats(), (scoped.Stats{Created: 1, RolledBack: 1}); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}

// Session state set in one scope is visible in that scope and, with
// NewConn, does not reach the next scope that gets the same pooled
// connection. Without the reset (scoped.New's default, a bare Release) it
// does: that is why NewConn resets.
func TestConnSessionStateStaysInItsScope(t *testing.T) {
	for _, tc := range []struct {
		name, set, probe, inScope string
	}{
		{"application_name", "SET application_name = 'scope-a'", "SHOW application_name", "scope-a"},
		{"search_path", "SET search_path = scope_a", "SHOW search_path", "scope_a"},
		{"set_config", "SELECT set_config('app.tenant', 'a', false)",
			"SELECT coalesce(current_setting('app.tenant', true), '')", "a"},
		{"temp table", "CREATE TEMP TABLE scoped_tmp (x int)",
			"SELECT coalesce(to_regclass('pg_temp.scoped_tmp')::text, '')", "scoped_tmp"},
		{"advisory lock", "SELECT pg_advisory_lock(7311)",
			"SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()", "1"},
	} {
		for _, reset := range []bool{true, false} {
			name := tc.name + "/NewConn"
			if !reset {
				name = tc.name + "/without reset"
			}
			t.Run(name, func(t *testing.T) {
				pool := newPool(t, 1) // one connection: every scope gets the same one
				r := NewConn(pool)
				if !reset {
					r = scoped.New(Conn(pool))
				}
				// inScope runs f on the scope's connection, twice looked up,
				// and returns the backend pid.
				inScope := func(f func(ctx context.Context, c *pgxpool.Conn)) uint32 {
					ctx, scope := scoped.Begin(context.Background())
					defer func() {
						if err := scope.Remove(); err != nil {
							t.Fatal(err)
						}
					}()
					c, err := r.Current(ctx)
					if err != nil {
						t.Fatal(err)
					}
					f(ctx, c)
					return c.Conn().PgConn().PID()
				}
				probe := func(ctx context.Context) string {
					c, err := r.Current(ctx) // the same connection, found again
					if err != nil {
						t.Fatal(err)
					}
					var v string
					if err := c.QueryRow(ctx, tc.probe).Scan(&v); err != nil {
						t.Fatal(err)
					}
					return v
				}
				var before, during, after string
				pid0 := inScope(func(ctx context.Context, _ *pgxpool.Conn) { before = probe(ctx) })
				pid1 := inScope(func(ctx context.Context, c *pgxpool.Conn) {
					if _, err := c.Exec(ctx, tc.set); err != nil {
						t.Fatal(err)
					}
					during = probe(ctx)
				})
				pid2 := inScope(func(ctx context.Context, _ *pgxpool.Conn) { after = probe(ctx) })
				if pid0 != pid1 || pid1 != pid2 {
					t.Fatalf("scopes ran on backends %d, %d, %d: the test needs one connection", pid0, pid1, pid2)
				}
				if during != tc.inScope || before == during {
					t.Fatalf("in the scope that set it: %q (before: %q), want %q", during, before, tc.inScope)
				}
				leaked := after == during
				if leaked == reset {
					t.Errorf("next scope on the same connection sees %q (before %q, set %q); leak expected: %v",
						after, before, during, !reset)
				}
			})
		}
	}
}

// DISCARD ALL deallocates prepared statements; NewConn clears pgx's
// statement cache with them, so the next scope's cached query prepares
// again instead of failing with "prepared statement does not exist".
func TestConnStatementCacheSurvivesReset(t *testing.T) {
	pool := newPool(t, 1)
	r := NewConn(pool)
	for i := range 3 {
		ctx, scope := scoped.Begin(context.Background())
		defer scope.Remove()
		c, err := r.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := c.QueryRow(ctx, "SELECT $1::int + 1", i).Scan(&n); err != nil || n != i+1 {
			t.Fatalf("scope %d: %v, %d", i, err, n)
		}
		if err := scope.Remove(); err != nil {
			t.Fatal(err)
		}
	}
}

// A pinned connection left inside a transaction is closed, not reset and
// reused: its transaction is aborted with its session, and it is out of
// the pool when Remove returns.
func TestConnLeftInTransactionIsClosed(t *testing.T) {
	pool := newPool(t, 2)
	table := newTable(t, pool, "pgx_conntx")
	r := NewConn(pool)
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	c, err := r.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO "+table+" (id) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	total := pool.Stat().TotalConns()
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	st := pool.Stat()
	if st.AcquiredConns() != 0 || st.TotalConns() != total-1 {
		t.Errorf("after Remove: %d acquired, %d in the pool (was %d); want 0 and the connection closed",
			st.AcquiredConns(), st.TotalConns(), total)
	}
	if got := ids(t, pool, table); !slices.Equal(got, nil) {
		t.Errorf("rows %v of an abandoned transaction", got)
	}
}

// DISCARD ALL stops LISTEN on the server, but a notification pgx already
// read is in its client-side buffer, and WaitForNotification hands that
// buffer out first. NewConn drops it with the reset, so the next scope on
// the same pooled connection hears only what was sent to it.
func TestConnNotificationsStayInTheirScope(t *testing.T) {
	pool := newPool(t, 1) // one connection: scope B gets scope A's
	r := NewConn(pool)
	inScope := func(f func(ctx context.Context, c *pgxpool.Conn)) {
		ctx, scope := scoped.Begin(context.Background())
		defer func() {
			if err := scope.Remove(); err != nil {
				t.Fatal(err)
			}
		}()
		c, err := r.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f(ctx, c)
	}
	exec := func(ctx context.Context, c *pgxpool.Conn, sql string) {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	var pidA, pidB uint32
	inScope(func(ctx context.Context, c *pgxpool.Conn) {
		pidA = c.Conn().PgConn().PID()
		exec(ctx, c, "LISTEN scoped_conn_notify")
		// A notification to oneself arrives with the NOTIFY's own reply,
		// so it is in pgx's buffer when Exec returns; A never reads it.
		exec(ctx, c, "NOTIFY scoped_conn_notify, 'from scope A'")
	})
	inScope(func(ctx context.Context, c *pgxpool.Conn) {
		pidB = c.Conn().PgConn().PID()
		exec(ctx, c, "LISTEN scoped_conn_notify")
		exec(ctx, c, "NOTIFY scoped_conn_notify, 'from scope B'")
		wctx, cancel := context.WithTimeout(ctx, testkit.Bound)
		defer cancel()
		n, err := c.Conn().WaitForNotification(wctx)
		if err != nil {
			t.Fatal(err)
		}
		if n.Payload != "from scope B" {
			t.Errorf("scope B's first notification is %q, want %q", n.Payload, "from scope B")
		}
	})
	if pidA != pidB {
		t.Fatalf("scopes ran on backends %d and %d: the test needs one connection", pidA, pidB)
	}
}
