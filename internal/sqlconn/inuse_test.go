package sqlconn

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/go-scoped/scoped/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// If a Go release renames or retypes sql.Conn's closemu, Close falls back
// to a grace period; this fails first, so that the fallback is a decision
// and not an accident.
func TestConnLockIsFound(t *testing.T) {
	if !closemuOK {
		t.Fatal("database/sql's Conn.closemu was not found: the pinned connection's teardown cannot look whether " +
			"the connection is in use and falls back to a grace period; update inuse.go")
	}
}

// Close never waits: a connection with nothing open goes back to the
// pool; one with a transaction begun on it and not ended is discarded at
// once, with ErrInUse, and released when the transaction ends; one closed
// before says sql.ErrConnDone. Without the lock (a future Go release) it
// waits fallbackGrace, then reports the connection in use and lets Close
// finish in the background. Not parallel: it changes closemuOK.
func TestCloseNeverWaits(t *testing.T) {
	db := testkit.NoopDB()
	defer db.Close()
	for _, lock := range []bool{true, false} {
		closemuOK = lock
		for _, leave := range []bool{false, true} {
			c, err := db.Conn(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var tx *sql.Tx
			if leave {
				if tx, err = c.BeginTx(context.Background(), nil); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() { done <- Close(c) }()
			err = testkit.WaitFor(t, done, "Close to return")
			if leave != errors.Is(err, ErrInUse) || (!leave && err != nil) {
				t.Fatalf("lock %v, leftover %v: Close = %v", lock, leave, err)
			}
			if tx != nil {
				_ = tx.Rollback()
			}
			testkit.Eventually(t, "the connection's release", func() bool { return db.Stats().InUse == 0 })
			if !leave {
				if err := Close(c); !errors.Is(err, sql.ErrConnDone) {
					t.Fatalf("lock %v: Close of a closed connection = %v, want sql.ErrConnDone", lock, err)
				}
			}
		}
	}
	closemuOK = true
}
