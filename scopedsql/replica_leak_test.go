package scopedsql_test

import (
	"context"
	"database/sql"
	"runtime"
	"testing"
	"weak"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

// TestReplicaStateFreedWithUsersClose: NewTx keeps, for a unit on a
// replica or one yielding a position, what its end needs; its own close
// lets go of it. A scoped.WithClose of the user's replaces that close:
// the state, and the *sql.Tx it is kept under, must not outlive the unit
// (they did: one map entry per unit, for the life of the NewTx).
func TestReplicaStateFreedWithUsersClose(t *testing.T) {
	primary, replica := testkit.NoopDB(), testkit.NoopDB()
	defer primary.Close()
	defer replica.Close()
	closes := 0
	txs := scopedsql.NewTx(primary, nil, scopedsql.WithReplicas(replica),
		scoped.WithClose(func(context.Context, *sql.Tx) error { closes++; return nil }))
	readOnly, err := scopedsql.WithTxOptions(context.Background(), sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, ctx := range map[string]context.Context{
		"replica":  readOnly,
		"position": scopedsql.WithReadAfter(context.Background(), 0x100),
	} {
		for _, commit := range []bool{true, false} {
			sctx, scope := scoped.Begin(ctx)
			tx, err := txs.Current(sctx)
			if err != nil {
				t.Fatal(err)
			}
			w := weak.Make(tx)
			tx = nil
			if commit {
				err = scope.Commit()
			} else {
				err = scope.Remove()
			}
			if err != nil {
				t.Fatal(err)
			}
			if !collected(w) {
				t.Errorf("%s unit (commit %v): its *sql.Tx is still reachable after its end", name, commit)
			}
		}
	}
	if closes != 4 {
		t.Errorf("the user's close ran %d times, want 4", closes)
	}
}

// collected reports whether w's object is collected, after as many
// collections as it takes for database/sql's goroutine of an ended
// transaction (which holds it) to have exited.
func collected[T any](w weak.Pointer[T]) bool {
	for range 100 {
		runtime.GC()
		if w.Value() == nil {
			return true
		}
		runtime.Gosched()
	}
	return false
}
