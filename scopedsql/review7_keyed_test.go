package scopedsql_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedsql"
)

type r7Tenant struct{}

// A keyed session's (WithScopeFunc) factory runs with the caller's values
// but not its cancellation, as the session outlives the caller. Its wait
// for a pooled connection must still end when the caller leaves: with the
// pool's one connection held elsewhere, a caller whose context is
// cancelled gets its cause from Current, not a session once the pool
// frees, and no connection stays taken. NewTx's begin is bounded; this
// covers NewConn (and Conn) too, on both servers.
func TestReview7KeyedConnGivesUpWhenTheCallerLeaves(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		for _, tc := range []struct {
			name string
			new  func(db *sql.DB) interface {
				Close() error
			}
			current func(r any, ctx context.Context) error
		}{
			{"NewConn", func(db *sql.DB) interface{ Close() error } {
				return scopedsql.NewConn(db, scoped.WithScopeFunc(scoped.ContextValue(r7Tenant{})))
			}, func(r any, ctx context.Context) error {
				_, err := r.(*scoped.ScopedSession[*sql.Conn]).Current(ctx)
				return err
			}},
			{"NewTx", func(db *sql.DB) interface{ Close() error } {
				return scopedsql.NewTx(db, nil, scoped.WithScopeFunc(scoped.ContextValue(r7Tenant{})))
			}, func(r any, ctx context.Context) error {
				_, err := r.(*scoped.ScopedSession[*sql.Tx]).Current(ctx)
				return err
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				db := openDB(t, s)
				release := heldPool(t, db)
				r := tc.new(db)
				cause := errors.New("review7: the client left")
				ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), r7Tenant{}, "a"))
				defer cancel(nil)
				errc := make(chan error, 1)
				go func() { errc <- tc.current(r, ctx) }()
				testkit.Eventually(t, "Current waiting for a connection", func() bool { return db.Stats().WaitCount > 0 })
				cancel(cause)
				var err error
				select {
				case err = <-errc:
				case <-time.After(hangDetector):
					release()
					err = <-errc
					t.Errorf("Current still waited for the pool after its caller left (then returned %v)", err)
				}
				if !errors.Is(err, cause) {
					t.Errorf("Current after the caller left = %v, want its cause", err)
				}
				release()
				if err := r.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				testkit.Eventually(t, "no connection in use", func() bool { return db.Stats().InUse == 0 })
			})
		}
	})
}

// The bound ends with the wait: a keyed connection whose creator's context
// ends after Current returned stays usable (it belongs to the key), and
// goes back to the pool at Close.
func TestReview7KeyedConnOutlivesItsCreatorsCancellation(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db := openDB(t, s)
		db.SetMaxOpenConns(1)
		conns := scopedsql.NewConn(db, scoped.WithScopeFunc(scoped.ContextValue(r7Tenant{})))
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), r7Tenant{}, "a"))
		c, err := conns.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		var one int
		if err := c.QueryRowContext(dbtest.Ctx(t), "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Errorf("the keyed connection after its creator left: %d, %v", one, err)
		}
		if err := conns.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		wantInUse(t, db, 0)
	})
}

// Two callers of one key of a NewConn: the first waits for the pool's one
// connection, the second for that creation. The first leaves: its Current
// returns its cause, and the second, whose context is alive, gets the
// connection once the pool frees one, not the first's cancellation.
func TestReview7KeyedConnWaiterOutlivesTheCreatorLeaving(t *testing.T) {
	db := openDB(t, dbtest.Postgres(t))
	release := heldPool(t, db)
	conns := scopedsql.NewConn(db, scoped.WithScopeFunc(scoped.ContextValue(r7Tenant{})), scoped.WithTeardownErrorHook(nil))
	base := context.WithValue(context.Background(), r7Tenant{}, "t1")
	cause := errors.New("review7: the creator left")
	creator, cancel := context.WithCancelCause(base)
	defer cancel(nil)
	errA, errB := make(chan error, 1), make(chan error, 1)
	go func() { _, err := conns.Current(creator); errA <- err }()
	testkit.Eventually(t, "the creator waiting for a connection", func() bool { return db.Stats().WaitCount > 0 })
	go func() { _, err := conns.Current(base); errB <- err }()
	testkit.Eventually(t, "the second caller waiting for the creation", func() bool {
		return testkit.Parked("github.com/go-scoped/scoped.lookup[")
	})
	cancel(cause)
	var errCreator error
	select {
	case errCreator = <-errA:
	case <-time.After(hangDetector):
		release()
		errCreator = <-errA
		t.Error("the creator still waited for the pool after it left")
	}
	if !errors.Is(errCreator, cause) {
		t.Errorf("creator's Current = %v, want its context's cause", errCreator)
	}
	release()
	if err := testkit.WaitFor(t, errB, "the second caller's Current"); err != nil {
		t.Errorf("second caller's Current = %v, want its connection", err)
	}
	if err := conns.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	testkit.Eventually(t, "no connection in use", func() bool { return db.Stats().InUse == 0 })
}

// A scope's NewConn waiting for the pool's one connection when the
// scope's context is cancelled with a cause returns promptly with that
// cause (errors.Is finds it), as NewTx's begin does: a handler tells its
// client leaving (scopedhttp's cause) from a timeout by it.
func TestReview7ScopedConnWaitEndsWithTheCause(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		for _, tc := range []struct {
			name    string
			current func(db *sql.DB, ctx context.Context) error
		}{
			{"NewConn", func(db *sql.DB, ctx context.Context) error {
				_, err := scopedsql.NewConn(db).Current(ctx)
				return err
			}},
			{"Conn", func(db *sql.DB, ctx context.Context) error {
				_, err := scoped.New(scopedsql.Conn(db)).Current(ctx)
				return err
			}},
			{"NewTx", func(db *sql.DB, ctx context.Context) error {
				_, err := scopedsql.NewTx(db, nil).Current(ctx)
				return err
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				db := openDB(t, s)
				release := heldPool(t, db)
				cause := errors.New("review7: the client left")
				parent, cancel := context.WithCancelCause(dbtest.Ctx(t))
				defer cancel(nil)
				ctx, scope := scoped.Begin(parent)
				errc := make(chan error, 1)
				go func() { errc <- tc.current(db, ctx) }()
				testkit.Eventually(t, "Current waiting for a connection", func() bool { return db.Stats().WaitCount > 0 })
				cancel(cause)
				var err error
				select {
				case err = <-errc:
				case <-time.After(hangDetector):
					release()
					err = <-errc
					t.Errorf("Current still waited for the pool after the scope's context ended (then %v)", err)
				}
				if !errors.Is(err, cause) {
					t.Errorf("Current = %v, want the scope context's cause", err)
				}
				scope.Remove()
				release()
				testkit.Eventually(t, "no connection in use", func() bool { return db.Stats().InUse == 0 })
			})
		}
	})
}
