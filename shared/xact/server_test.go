package xact

import (
	"database/sql"
	"testing"

	_ "github.com/lib/pq"

	"github.com/go-scoped/scoped/internal/dbtest"
)

// The statements, on a real server: a committed transaction is trusted
// until the server checkpoints, and an id the server never gave is in the
// future.
func TestStatementsOnTheServer(t *testing.T) {
	srv := dbtest.Postgres(t)
	db, err := sql.Open("postgres", srv.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() }) // after the table's cleanup
	ctx := dbtest.Ctx(t)
	table := dbtest.CreateIDTable(t, db, "xact_status")

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var xid, began sql.NullString
	if err := tx.QueryRowContext(ctx, ReadSQL).Scan(&xid, &began); err != nil {
		t.Fatal(err)
	}
	if xid.Valid {
		t.Errorf("a transaction that wrote nothing has id %s", xid.String)
	}
	if _, err := tx.ExecContext(ctx, srv.InsertID(table), 1); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRowContext(ctx, ReadSQL).Scan(&xid, &began); err != nil {
		t.Fatal(err)
	}
	if !xid.Valid || !began.Valid {
		t.Fatalf("a transaction that wrote: id %v, began %v", xid, began)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	verdict := func() Verdict {
		t.Helper()
		var status sql.NullString
		var checkpointed bool
		if err := db.QueryRowContext(ctx, StatusSQL, xid.String, began.String).Scan(&status, &checkpointed); err != nil {
			t.Fatal(err)
		}
		var st *string
		if status.Valid {
			st = &status.String
		}
		v, _ := Of(st, checkpointed)
		return v
	}
	// A checkpoint in the second the transaction began counts as after
	// it; wait until the clock has left that second for the first check.
	if _, err := db.ExecContext(ctx, "SELECT pg_sleep(1.1 - (extract(epoch from clock_timestamp()) - floor($1::float8)))", began.String); err != nil {
		t.Fatal(err)
	}
	var checkpointedAlready bool
	if err := db.QueryRowContext(ctx, "SELECT (pg_control_checkpoint()).checkpoint_time >= to_timestamp(floor($1::float8))", began.String).Scan(&checkpointedAlready); err != nil {
		t.Fatal(err)
	}
	if !checkpointedAlready {
		if v := verdict(); v != Committed {
			t.Errorf("verdict of a committed transaction, no checkpoint since: %v, want Committed", v)
		}
	}
	if _, err := db.ExecContext(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	if v := verdict(); v != Unknown {
		t.Errorf("verdict of a committed transaction after a checkpoint: %v, want Unknown", v)
	}

	var status sql.NullString
	var checkpointed bool
	err = db.QueryRowContext(ctx, StatusSQL, "4000000000000", began.String).Scan(&status, &checkpointed)
	if !Forgotten(err) {
		t.Errorf("status of an id never given: %v, want an error Forgotten recognises", err)
	}
}
