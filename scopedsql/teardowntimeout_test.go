package scopedsql_test

import (
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// Issue 10 item 9: a COMMIT that never returns (a proxy that stops
// forwarding at COMMIT) does not hold the scope past
// scoped.WithTeardownTimeout: Commit returns an error wrapping
// scoped.ErrCommitUnknown while the COMMIT is still stuck (the proxy lets
// go only after Commit returned: a Commit that waited for the driver would
// hang here). database/sql cannot abandon the call: the connection stays
// busy until the driver returns, and the late outcome reaches the hook.
// Once the proxy lets go, nothing is left behind.
func TestCommitThatNeverReturnsIsBoundedByTheTeardownTimeout(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		direct := openDB(t, s)
		table := dbtest.CreateIDTable(t, direct, "scopedsql_stall")
		p := newCommitProxy(t, serverAddr(s), true)
		db, err := sql.Open(s.Driver, p.dsn(s))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var log errorLog
		const bound = 300 * time.Millisecond
		txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownTimeout(bound), log.option())

		ctx, scope := scoped.Begin(dbtest.Ctx(t))
		tx, err := txs.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, s.InsertID(table), 1); err != nil {
			t.Fatal(err)
		}
		p.armed.Store(true)
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- scope.Commit() }()
		select {
		case err = <-done:
		case <-time.After(dbtest.Bound):
			t.Fatalf("Commit still blocked after %v with a teardown timeout of %v", dbtest.Bound, bound)
		}
		t.Logf("Commit returned after %v (bound %v): %v", time.Since(start).Round(time.Millisecond), bound, err)
		if !errors.Is(err, scoped.ErrCommitUnknown) || !errors.Is(err, scoped.ErrTeardownTimeout) {
			t.Fatalf("Commit = %v, want an error wrapping ErrCommitUnknown and ErrTeardownTimeout", err)
		}
		if p.hits.Load() != 1 {
			t.Fatalf("the proxy held %d COMMITs, want 1", p.hits.Load())
		}
		if got := db.Stats().InUse; got != 1 {
			t.Errorf("InUse = %d while the COMMIT is stuck, want 1: database/sql cannot abandon it", got)
		}

		p.release()
		testkit.Eventually(t, "the stuck connection is still in use after the proxy let go", func() bool {
			return db.Stats().InUse == 0
		})
		testkit.Eventually(t, "the late outcome of the COMMIT never reached the hook", func() bool {
			return len(log.all()) >= 2
		})
		// The server never received the COMMIT: its session ended, and the
		// transaction with it.
		if ids := dbtest.IDs(t, direct, table); len(ids) != 0 {
			t.Errorf("ids = %v, want none", ids)
		}
	})
}

// What bounds the driver call itself: go-sql-driver/mysql's readTimeout
// ends the stuck COMMIT and discards its connection, with no teardown
// timeout and before the proxy lets go. (lib/pq has no such parameter.)
func TestMySQLReadTimeoutBoundsACommitThatNeverReturns(t *testing.T) {
	t.Parallel()
	s := dbtest.MySQL(t)
	direct := openDB(t, s)
	table := dbtest.CreateIDTable(t, direct, "scopedsql_readtimeout")
	p := newCommitProxy(t, serverAddr(s), true)
	dsn := p.dsn(s)
	if strings.Contains(dsn, "?") {
		dsn += "&readTimeout=300ms"
	} else {
		dsn += "?readTimeout=300ms"
	}
	db, err := sql.Open(s.Driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))

	ctx, scope := scoped.Begin(dbtest.Ctx(t))
	tx, err := txs.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, s.InsertID(table), 1); err != nil {
		t.Fatal(err)
	}
	p.armed.Store(true)
	done := make(chan error, 1)
	go func() { done <- scope.Commit() }()
	select {
	case err = <-done:
	case <-time.After(dbtest.Bound):
		t.Fatalf("Commit still blocked after %v with readTimeout=300ms", dbtest.Bound)
	}
	if err == nil {
		t.Fatal("Commit = nil for a COMMIT the server never received")
	}
	t.Log(err)
	wantInUse(t, db, 0) // the driver gave the connection up; the proxy still holds it
	p.release()
	if ids := dbtest.IDs(t, direct, table); len(ids) != 0 {
		t.Errorf("ids = %v, want none", ids)
	}
}
