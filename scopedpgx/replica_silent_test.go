package scopedpgx

import (
	"context"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestReplicaThatNeverAnswers: a read-only unit whose context has no
// deadline, and whose replica accepts its connection and never answers,
// runs on the primary, and the replica is skipped as down. It waited for
// ever: pgx honours the context while it connects, but there was none to
// honour.
func TestReplicaThatNeverAnswers(t *testing.T) {
	dbtest.Postgres(t)
	primary := newPool(t, 4)
	replica, err := pgxpool.New(context.Background(), "postgres://postgres@"+dbtest.SilentServer(t)+"/test?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(replica.Close) // before the server's connections close: cancels the connect
	l := &routeLog{routes: map[scoped.EventKind]string{}}
	txs := NewTx(primary, pgx.TxOptions{AccessMode: pgx.ReadOnly}, WithReplicas(replica), scoped.WithEventHook(l.hook))
	done := make(chan error, 1)
	go func() {
		done <- scoped.Run(context.Background(), func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			var standby bool
			return tx.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby)
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
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.routes[scoped.Created]; r != "primary (replica 1 down)" {
		t.Errorf("route %q, want primary (replica 1 down)", r)
	}
}
