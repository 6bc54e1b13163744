package scopedsql

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/go-scoped/scoped/internal/dbtest"
)

// If a Go release renames or retypes sql.Conn's closemu, CloseConn falls
// back to a grace period; this fails first, so that the fallback is a
// decision and not an accident.
func TestConnLockIsFound(t *testing.T) {
	if !closemuOK {
		t.Fatal("database/sql's Conn.closemu was not found: NewConn's teardown cannot look whether " +
			"the connection is in use and falls back to a grace period; update inuse.go")
	}
}

// The fallback: without the lock, CloseConn waits fallbackGrace, then
// reports the connection in use and lets Close finish in the background
// when the leftover ends. Not parallel: it changes closemuOK.
func TestCloseConnFallbackWithoutTheLock(t *testing.T) {
	s := dbtest.Postgres(t)
	db, err := sql.Open(s.Driver, s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	closemuOK = false
	defer func() { closemuOK = true }()

	ctx := dbtest.Ctx(t)
	for _, leave := range []bool{false, true} {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var rows *sql.Rows
		if leave {
			if rows, err = c.QueryContext(context.Background(), "SELECT 1"); err != nil {
				t.Fatal(err)
			}
		}
		err = CloseConn(c)
		if leave != errors.Is(err, ErrConnInUse) || (!leave && err != nil) {
			t.Fatalf("leftover %v: CloseConn = %v", leave, err)
		}
		if rows != nil {
			_ = rows.Close()
		}
		deadline := time.Now().Add(dbtest.Bound)
		for db.Stats().InUse != 0 {
			if time.Now().After(deadline) {
				t.Fatal("the connection was never released")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
