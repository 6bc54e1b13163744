package xact

import (
	"context"
	"database/sql"
	"syscall"
	"testing"

	_ "github.com/lib/pq"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
)

// The checkpoint rule rests on every crash recovery
// ending in a checkpoint before the server hands out ids again. The
// restart harness crashes the server with pg_ctl stop -m immediate (the
// postmaster restarts too). This is the other crash: one backend killed,
// the postmaster resetting shared memory and rerunning crash recovery
// itself (restart_after_crash, on by default), without a restart. The
// first answer the server gives afterwards must already say that it has
// checkpointed since a transaction that was in progress at the crash
// began, and that transaction must not read as committed.
func TestBackendCrashReinitialisationCheckpointsFirst(t *testing.T) {
	c := dbtest.NewCluster(t)
	db, err := sql.Open("postgres", c.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := dbtest.Ctx(t)
	if _, err := db.ExecContext(ctx, "CREATE TABLE crash_reinit (id bigint PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // its connection dies with the crash
	if _, err := tx.ExecContext(ctx, "INSERT INTO crash_reinit VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var xid, began sql.NullString
	if err := tx.QueryRowContext(ctx, ReadSQL).Scan(&xid, &began); err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := tx.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if !xid.Valid {
		t.Fatal("a transaction that wrote has no id")
	}
	// Another transaction commits after it: its commit flushes the WAL,
	// the first one's insert included, so that crash recovery replays it
	// (the id is then in the past, and not given again).
	if _, err := db.ExecContext(ctx, "INSERT INTO crash_reinit VALUES (2)"); err != nil {
		t.Fatal(err)
	}

	// Before the crash the server has not checkpointed since it began (out
	// of the second it began in first, which would count).
	if _, err := db.ExecContext(ctx, "SELECT pg_sleep(1.1 - (extract(epoch from clock_timestamp()) - floor($1::float8)))", began.String); err != nil {
		t.Fatal(err)
	}
	var before bool
	if err := db.QueryRowContext(ctx, "SELECT (pg_control_checkpoint()).checkpoint_time >= to_timestamp(floor($1::float8))", began.String).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if before {
		t.Skip("the server checkpointed since the transaction began, before the crash: nothing to see")
	}

	// A backend dies: the postmaster ends every session and reruns crash
	// recovery.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The first connection the server accepts after reinitialising. (One
	// accepted before it noticed the crash is ended with it: keep asking.)
	var status sql.NullString
	var checkpointed bool
	var serr error
	testkit.Eventually(t, "a status answer after the reinitialisation", func() bool {
		fresh, err := sql.Open("postgres", c.DSN)
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.Close()
		qctx, cancel := context.WithTimeout(ctx, testkit.Bound)
		defer cancel()
		// The killed backend's entry in shared memory goes only when the
		// postmaster resets it: gone means reinitialised.
		var since bool
		if err := fresh.QueryRowContext(qctx, "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pid).Scan(&since); err != nil || !since {
			return false
		}
		serr = fresh.QueryRowContext(qctx, StatusSQL, xid.String, began.String).Scan(&status, &checkpointed)
		return serr == nil || Forgotten(serr)
	})
	t.Logf("after the reinitialisation: status %v, checkpointed %v, error %v", status, checkpointed, serr)
	if serr != nil {
		t.Fatalf("transaction %s, whose insert was flushed, is forgotten: %v", xid.String, serr)
	}
	var st *string
	if status.Valid {
		st = &status.String
	}
	if v, why := Of(st, checkpointed); v == Committed {
		t.Errorf("transaction %s, in progress at the crash, reads as committed (status %v, checkpointed %v) %s", xid.String, status, checkpointed, why)
	}
	if !checkpointed {
		t.Errorf("no checkpoint since transaction %s began, after crash recovery (status %v)", xid.String, status)
	}
}
