package scopedpgx

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

type review7Tenant struct{}

// review7AcquireStarts is a pgx tracer that reports every Acquire of its
// pool as it starts, before it waits.
type review7AcquireStarts chan struct{}

func (s review7AcquireStarts) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	s <- struct{}{}
	return ctx
}
func (review7AcquireStarts) TraceAcquireEnd(context.Context, *pgxpool.Pool, pgxpool.TraceAcquireEndData) {
}
func (review7AcquireStarts) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (review7AcquireStarts) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// review7ExhaustedPool returns a pool of one connection, which it holds
// (the caller releases it), and the starts of the pool's Acquires after.
func review7ExhaustedPool(t *testing.T) (*pgxpool.Pool, *pgxpool.Conn, review7AcquireStarts) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbtest.Postgres(t).DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	starts := make(review7AcquireStarts, 8)
	cfg.ConnConfig.Tracer = starts
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	held, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	<-starts
	return pool, held, starts
}

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
			pool, held, starts := review7ExhaustedPool(t)
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
			<-starts // cancel once the caller waits for the pool
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

// Two callers of one key wait for the same creation; the one that
// created it leaves. Its wait for a connection ends with its cause, and
// the caller still there creates the session itself once the pool frees.
func TestReview7KeyedWaiterOutlivesTheCreatorsLeaving(t *testing.T) {
	pool, held, starts := review7ExhaustedPool(t)
	r := NewTx(pool, pgx.TxOptions{}, scoped.WithScopeFunc(scoped.ContextValue(review7Tenant{})))
	key := context.WithValue(context.Background(), review7Tenant{}, "a")
	cause := errors.New("the first client left")
	first, cancel := context.WithCancelCause(key)
	firstErr := make(chan error, 1)
	go func() {
		_, err := r.Current(first)
		firstErr <- err
	}()
	<-starts
	type result struct {
		tx  pgx.Tx
		err error
	}
	second := make(chan result, 1)
	go func() {
		tx, err := r.Current(key)
		second <- result{tx, err}
	}()
	cancel(cause)
	select {
	case err := <-firstErr:
		if !errors.Is(err, cause) {
			t.Errorf("the caller that left: %v, want its cause", err)
		}
	case <-time.After(10 * time.Second):
		held.Release()
		t.Errorf("the caller that left: still waiting for the pool; once it freed: %v", <-firstErr)
		<-second
		_ = r.Close()
		return
	}
	<-starts // the second caller now waits for the pool itself
	held.Release()
	res := <-second
	if res.err != nil {
		t.Fatalf("the caller still there: %v", res.err)
	}
	if _, err := res.tx.Exec(context.Background(), "select 1"); err != nil {
		t.Error(err)
	}
	if err := r.Close(); err != nil {
		t.Error(err)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired after Close", n)
	}
}

// A keyed pinned connection is reset when Close ends it, as a scope's is
// when the scope ends: its next user does not see its settings.
func TestReview7KeyedConnIsResetByClose(t *testing.T) {
	pool := newPool(t, 1)
	r := NewConn(pool, scoped.WithScopeFunc(scoped.ContextValue(review7Tenant{})))
	ctx := context.WithValue(context.Background(), review7Tenant{}, "a")
	c, err := r.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "set application_name = 'review7_keyed'"); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	var name string
	if err := pool.QueryRow(context.Background(), "show application_name").Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name == "review7_keyed" {
		t.Error("the keyed session's setting reached the pool's next user")
	}
}

// WithEagerBegin in a keyed session: a BEGIN that the server does not
// answer (the network drops everything) ends when the caller of Current
// leaves, with its cause, and the connection is not kept. Current does
// not wait for pgx to finish closing that connection (its cancel request
// goes to the same unreachable server).
func TestReview7KeyedEagerBeginEndsWhenTheCallerLeaves(t *testing.T) {
	p := newProxy(t, 0)
	pool := p.pool(t, 1)
	if _, err := pool.Exec(context.Background(), "select 1"); err != nil { // a connection, idle
		t.Fatal(err)
	}
	r := NewTx(pool, pgx.TxOptions{}, WithEagerBegin(), scoped.WithScopeFunc(scoped.ContextValue(review7Tenant{})))
	cause := errors.New("the client left")
	ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), review7Tenant{}, "a"))
	p.blackhole.Store(true)
	done := make(chan error, 1)
	go func() {
		_, err := r.Current(ctx)
		done <- err
	}()
	cancel(cause)
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Error("Current still waiting 10 s after its caller left")
		p.blackhole.Store(false)
		err = <-done
	}
	p.blackhole.Store(false)
	if !errors.Is(err, cause) {
		t.Errorf("Current after the caller left: %v, want its cause", err)
	}
	if err := r.Close(); err != nil {
		t.Error(err)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired", n)
	}
}
