package scopedsql_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedsql"
)

// TestReplicaThatNeverAnswers: a read-only unit whose replica accepts
// its connection and never answers runs on the primary, and the replica
// is skipped as down. It hung for ever: lib/pq honours no context while
// it opens a connection, so not even the unit's deadline ended it.
func TestReplicaThatNeverAnswers(t *testing.T) {
	primary := openDB(t, dbtest.Postgres(t))
	replica, err := sql.Open("postgres", "postgres://postgres@"+dbtest.SilentServer(t)+"/test?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()
	var route string
	txs := scopedsql.NewTx(primary, &sql.TxOptions{ReadOnly: true}, scopedsql.WithReplicas(replica),
		scoped.WithEventHook(func(_ context.Context, ev scoped.Event) {
			if ev.Kind == scoped.Created {
				route = ev.Route
			}
		}))
	done := make(chan error, 1)
	go func() {
		done <- scoped.Run(dbtest.Ctx(t), func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			var standby bool
			return tx.QueryRowContext(ctx, "SELECT pg_is_in_recovery()").Scan(&standby)
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the unit failed: %v", err)
		}
	case <-time.After(time.Minute): // a hang detector, not a measure
		t.Fatal("the unit still waits for the silent replica after a minute")
	}
	if route != "primary (replica 1 down)" {
		t.Errorf("route %q, want primary (replica 1 down)", route)
	}
}
