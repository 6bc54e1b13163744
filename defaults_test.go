package scoped_test

import (
	"context"
	"database/sql"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
)

// fakePlainTx has the database/sql shape, Commit() and Rollback().
type fakePlainTx struct {
	rec  *testkit.Log
	done bool
}

func (t *fakePlainTx) Commit() error {
	t.rec.Add("commit")
	if t.done {
		return sql.ErrTxDone
	}
	t.done = true
	return nil
}

func (t *fakePlainTx) Rollback() error {
	t.rec.Add("rollback")
	if t.done {
		return sql.ErrTxDone
	}
	t.done = true
	return nil
}

// fakePooled goes back to its pool with Release, like *pgxpool.Conn.
type fakePooled struct{ rec *testkit.Log }

func (c *fakePooled) Release() { c.rec.Add("release") }

// gormDB has no method to end it, like *gorm.DB.
type gormDB struct {
	name string
	rec  *testkit.Log
}

func TestDefaultTeardownPgxStyle(t *testing.T) {
	type valueKey struct{}
	var calls atomic.Int64
	r := txSession(nil, "pgx", &calls)
	var seen []any
	r2 := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{name: "pgx", onRollback: func(ctx context.Context) {
			seen = append(seen, ctx.Value(valueKey{}))
		}}, nil
	})
	parent := context.WithValue(context.Background(), valueKey{}, "v")

	// Remove rolls back.
	ctx, scope := scoped.Begin(parent)
	tx := mustCurrent(t, r, ctx)
	tx2 := mustCurrent(t, r2, ctx)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if tx.rollbacks.Load() != 1 || tx.commits.Load() != 0 || tx2.rollbacks.Load() != 1 {
		t.Fatalf("Remove: rollbacks %d, commits %d; want a rollback", tx.rollbacks.Load(), tx.commits.Load())
	}
	if len(seen) != 1 || seen[0] != "v" {
		t.Fatalf("Rollback(ctx) saw values %v, want the scope's", seen)
	}

	// Commit commits and does not roll back.
	ctx, scope = scoped.Begin(parent)
	tx = mustCurrent(t, r, ctx)
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	if tx.commits.Load() != 1 || tx.rollbacks.Load() != 0 {
		t.Fatalf("Commit: commits %d, rollbacks %d; want a commit", tx.commits.Load(), tx.rollbacks.Load())
	}
}

func TestDefaultTeardownCloserReleaserAndPlainTx(t *testing.T) {
	rec := &testkit.Log{}
	closer := connSession(rec, "conn", nil)
	releaser := scoped.New(func(ctx context.Context) (*fakePooled, error) { return &fakePooled{rec: rec}, nil })
	plain := scoped.New(func(ctx context.Context) (*fakePlainTx, error) { return &fakePlainTx{rec: rec}, nil })

	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, closer, ctx)
	mustCurrent(t, releaser, ctx)
	mustCurrent(t, plain, ctx)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"rollback", "release", "close conn"}; !equal(rec.List(), want) {
		t.Fatalf("Remove: %v, want %v", rec.List(), want)
	}

	rec.Reset()
	ctx, scope = scoped.Begin(context.Background())
	mustCurrent(t, closer, ctx)
	mustCurrent(t, releaser, ctx)
	mustCurrent(t, plain, ctx)
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"commit", "release", "close conn"}; !equal(rec.List(), want) {
		t.Fatalf("Commit: %v, want %v", rec.List(), want)
	}

	// A transaction its user already ended by hand is not an error.
	rec.Reset()
	ctx, scope = scoped.Begin(context.Background())
	tx := mustCurrent(t, plain, ctx)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := scope.Remove(); err != nil {
		t.Fatalf("Remove after a manual commit = %v, want nil (ErrTxDone ignored)", err)
	}
	if st := plain.Stats(); st.Failed != 0 || st.Live != 0 {
		t.Fatalf("Stats = %+v, want no failure", st)
	}
}

func TestOptionsGiveTeardownToTypesWithoutOne(t *testing.T) {
	rec := &testkit.Log{}
	r := scoped.New(func(ctx context.Context) (*gormDB, error) {
		return &gormDB{name: "gorm", rec: rec}, nil
	},
		scoped.WithCommit(func(ctx context.Context, db *gormDB) error { db.rec.Add("commit %s", db.name); return nil }),
		scoped.WithRollback(func(ctx context.Context, db *gormDB) error { db.rec.Add("rollback %s", db.name); return nil }),
		scoped.WithClose(func(ctx context.Context, db *gormDB) error { db.rec.Add("close %s", db.name); return nil }),
	)
	ctx, scope := scoped.Begin(context.Background())
	mustCurrent(t, r, ctx)
	if err := scope.Remove(); err != nil {
		t.Fatal(err)
	}
	ctx, scope = scoped.Begin(context.Background())
	mustCurrent(t, r, ctx)
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	want := []string{"rollback gorm", "close gorm", "commit gorm", "close gorm"}
	if !equal(rec.List(), want) {
		t.Fatalf("events %v, want %v", rec.List(), want)
	}
}

func TestOptionsOverrideDetectedTeardown(t *testing.T) {
	rec := &testkit.Log{}
	r := scoped.New(func(ctx context.Context) (*fakeTx, error) {
		return &fakeTx{name: "tx", rec: rec}, nil
	},
		scoped.WithCommit[*fakeTx](nil), // not committable: Scope.Commit rolls it back
		scoped.WithRollback(func(ctx context.Context, tx *fakeTx) error { rec.Add("custom rollback"); return nil }),
	)
	ctx, scope := scoped.Begin(context.Background())
	tx := mustCurrent(t, r, ctx)
	if err := scope.Commit(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"custom rollback"}; !equal(rec.List(), want) {
		t.Fatalf("events %v, want %v", rec.List(), want)
	}
	if tx.commits.Load() != 0 || tx.rollbacks.Load() != 0 {
		t.Fatal("the detected methods ran despite the options")
	}
}

func TestNewPanicsForSessionTypeWithNoWayToEnd(t *testing.T) {
	msg := recoverString(func() {
		scoped.New(func(ctx context.Context) (*gormDB, error) { return &gormDB{}, nil })
	})
	for _, want := range []string{"scoped: ", "*scoped_test.gormDB", "WithRollback", "WithClose"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("New panic = %q, want it to mention %q", msg, want)
		}
	}
	// WithCommit alone is no way to end a session that is not committed.
	msg = recoverString(func() {
		scoped.New(func(ctx context.Context) (*gormDB, error) { return &gormDB{}, nil },
			scoped.WithCommit(func(context.Context, *gormDB) error { return nil }))
	})
	if !strings.Contains(msg, "gormDB") {
		t.Fatalf("New with only WithCommit: panic %q, want one naming the type", msg)
	}
	if msg := recoverString(func() { scoped.New[*fakeTx](nil) }); !strings.HasPrefix(msg, "scoped: ") {
		t.Fatalf("New(nil) panic = %q", msg)
	}
}

func TestTeardownOptionOfWrongTypePanics(t *testing.T) {
	msg := recoverString(func() {
		scoped.New(func(ctx context.Context) (*fakeTx, error) { return &fakeTx{}, nil },
			scoped.WithCommit(func(context.Context, *fakeConn) error { return nil }))
	})
	for _, want := range []string{"scoped: ", "WithCommit[*scoped_test.fakeConn]", "ScopedSession[*scoped_test.fakeTx]"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("panic = %q, want it to mention %q", msg, want)
		}
	}
	for name, opt := range map[string]scoped.Option{
		"WithRollback": scoped.WithRollback(func(context.Context, *fakeConn) error { return nil }),
		"WithClose":    scoped.WithClose(func(context.Context, *fakeConn) error { return nil }),
	} {
		msg := recoverString(func() {
			scoped.New(func(ctx context.Context) (*fakeTx, error) { return &fakeTx{}, nil }, opt)
		})
		if !strings.Contains(msg, name) {
			t.Fatalf("%s of the wrong type: panic %q", name, msg)
		}
	}
}
