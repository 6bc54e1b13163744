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
