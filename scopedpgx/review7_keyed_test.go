package scopedpgx

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

type review7Tenant struct{}

// A keyed session's factory runs with the caller's values but not its
// cancellation (the session outlives the caller). Its wait for a pooled
// connection must still end when the caller leaves: with the pool's only
// connection held elsewhere, a caller whose context is cancelled gets its
// cause from Current, not a session once the pool frees (the held
// connection is released after a while only so that a hang shows as a
// wrong answer rather than a test timeout).
func TestReview7KeyedCurrentGivesUpWhenTheCallerLeaves(t *testing.T) {
	for _, tc := range []struct {
		name    string
		current func(pool *pgxpool.Pool, ctx context.Context) (func() error, error)
	}{
		{"NewTx", func(pool *pgxpool.Pool, ctx context.Context) (func() error, error) {
			r := NewTx(pool, pgx.TxOptions{}, scoped.WithScopeFunc(scoped.ContextValue(review7Tenant{})))
			_, err := r.Current(ctx)
			return r.Close, err
		}},
		{"NewConn", func(pool *pgxpool.Pool, ctx context.Context) (func() error, error) {
			r := NewConn(pool, scoped.WithScopeFunc(scoped.ContextValue(review7Tenant{})))
			_, err := r.Current(ctx)
			return r.Close, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := newPool(t, 1)
			held, err := pool.Acquire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			cause := errors.New("the client left")
			ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), review7Tenant{}, "a"))
			type result struct {
				close func() error
				err   error
			}
			done := make(chan result, 1)
			go func() {
				c, err := tc.current(pool, ctx)
				done <- result{c, err}
			}()
			// Cancel once the caller waits for the pool.
			for pool.Stat().EmptyAcquireCount() == 0 {
				time.Sleep(time.Millisecond)
			}
			cancel(cause)
			var res result
			select {
			case res = <-done:
				held.Release()
			case <-time.After(10 * time.Second):
				held.Release()
				res = <-done
			}
			if !errors.Is(res.err, cause) && !errors.Is(res.err, context.Canceled) {
				t.Errorf("Current after the caller left: %v, want its cause", res.err)
			}
			if err := res.close(); err != nil {
				t.Error(err)
			}
			if n := pool.Stat().AcquiredConns(); n != 0 {
				t.Errorf("%d connections acquired after Close", n)
			}
		})
	}
}

// The bound of a keyed session's wait for a connection ends with the
// wait: a caller that leaves after Current returned leaves the session
// usable (it belongs to the key, not to the caller), with and without
// WithEagerBegin.
func TestReview7KeyedSessionOutlivesTheCallersCancellation(t *testing.T) {
	for _, eager := range []bool{false, true} {
		pool := newPool(t, 1)
		opts := []Option{scoped.WithScopeFunc(scoped.ContextValue(review7Tenant{}))}
		if eager {
			opts = append(opts, WithEagerBegin())
		}
		r := NewTx(pool, pgx.TxOptions{}, opts...)
		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), review7Tenant{}, "a"))
		tx, err := r.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		var one int
		if err := tx.QueryRow(context.Background(), "select 1").Scan(&one); err != nil || one != 1 {
			t.Errorf("eager %v: statement after the caller left: %d, %v", eager, one, err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("eager %v: Close: %v", eager, err)
		}
		if n := pool.Stat().AcquiredConns(); n != 0 {
			t.Errorf("eager %v: %d connections acquired after Close", eager, n)
		}
	}
}
