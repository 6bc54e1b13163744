package scopedconnect_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedconnect"
	"github.com/go-scoped/scoped/scopedsql"
)

var errAgain = errors.New("try again")

// A call run again under WithRetry runs only the hooks of the attempt
// that answered, after the client has that answer: the failed attempt's
// OnCommit hook never runs, its OnRollback hook does. The first attempt
// fails by returning a retryable error (both servers) or, on PostgreSQL,
// at COMMIT (a serialization failure); the second commits. Every
// protocol and client.
func TestRetriedCallRunsOnlyTheAnsweringAttemptsCommitHooks(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		p := newProbe(t, s, "connect_hooks_retry")
		var events testkit.Log
		var attempts atomic.Int64
		var failAtCommit atomic.Bool
		base := int64(0)
		check := func(ctx context.Context, _ string) error {
			n := attempts.Add(1)
			id := base + n
			if n == 1 && failAtCommit.Load() {
				id = -id // COMMIT fails with 40001
			}
			if err := p.insert(ctx, id); err != nil {
				return err
			}
			_ = scoped.OnCommit(ctx, func(context.Context) { events.Add("commit %d", n) })
			_ = scoped.OnRollback(ctx, func(context.Context) { events.Add("rollback %d", n) })
			if n > 1 {
				return scoped.OnCommit(ctx, p.block("commit", id))
			}
			if !failAtCommit.Load() {
				return connect.NewError(connect.CodeUnavailable, errAgain)
			}
			return nil
		}
		url := serveWrapped(t, scopedconnect.Handler, &service{check: check}, connect.WithInterceptors(scopedconnect.NewInterceptor(
			scopedconnect.WithCommitMode(scopedconnect.Autocommit), scopedconnect.Bind(p.txs),
			scopedconnect.WithRetry(2, func(err error) bool { return errors.Is(err, errAgain) || scopedsql.Retryable(err) }))))
		_ = captureLog(t)
		var saved []int64
		for _, c := range clients(t, url) {
			for _, atCommit := range []bool{false, true} {
				if atCommit && s.Name != "postgres" {
					continue
				}
				name := fmt.Sprintf("%s fail at commit=%v", c.name, atCommit)
				base += 10
				attempts.Store(0)
				events.Reset()
				failAtCommit.Store(atCommit)
				done := make(chan int, 1)
				go func() {
					code, _ := c.check(dbtest.Ctx(t), "")
					done <- code
				}()
				if code := testkit.WaitFor(t, done, name+": the client's answer while the hook waits"); code != 0 {
					t.Errorf("%s: client got code %d, want OK", name, code)
				}
				want := hookRun{"commit", base + 2, true}
				if run := testkit.WaitFor(t, p.started, name+": the hook to start"); run != want {
					t.Errorf("%s: hook ran %+v, want %+v", name, run, want)
				}
				p.release <- struct{}{}
				testkit.WaitFor(t, p.finished, name+": the hook to finish")
				if got, want := events.List(), []string{"rollback 1", "commit 2"}; !slices.Equal(got, want) {
					t.Errorf("%s: hooks ran %q, want %q", name, got, want)
				}
				saved = append(saved, base+2)
			}
		}
		if got := dbtest.IDs(t, p.db, p.table); !slices.Equal(got, saved) {
			t.Errorf("rows %v, want only the second attempts' %v", got, saved)
		}
	})
}

// A call whose first attempt failed at COMMIT and whose second panicked,
// past connect (no connect.WithRecover) to a recoverer around Handler,
// still runs both attempts' OnRollback hooks, and no OnCommit hook.
func TestRetriedCallThatPanicsRunsTheEarlierAttemptsRollbackHooks(t *testing.T) {
	p := newProbe(t, dbtest.Postgres(t), "connect_hooks_retry_panic")
	ran := make(chan string, 4)
	var attempts atomic.Int64
	check := func(ctx context.Context, _ string) error {
		n := attempts.Add(1)
		if err := p.insert(ctx, -n); err != nil { // COMMIT fails with 40001
			return err
		}
		_ = scoped.OnCommit(ctx, func(context.Context) { ran <- fmt.Sprint("commit ", n) })
		_ = scoped.OnRollback(ctx, func(context.Context) { ran <- fmt.Sprint("rollback ", n) })
		if n > 1 {
			panic("handler bug")
		}
		return nil
	}
	recoverer := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				if recover() != nil {
					w.WriteHeader(http.StatusInternalServerError)
				}
			}()
			h.ServeHTTP(w, r)
		})
	}
	url := serveWrapped(t, func(h http.Handler) http.Handler { return recoverer(scopedconnect.Handler(h)) },
		&service{check: check}, connect.WithInterceptors(scopedconnect.NewInterceptor(
			scopedconnect.WithCommitMode(scopedconnect.Autocommit), scopedconnect.Bind(p.txs),
			scopedconnect.WithRetry(2, scopedsql.Retryable))))
	if code, _ := clients(t, url)[1].check(dbtest.Ctx(t), ""); code == 0 {
		t.Error("the call that panicked succeeded")
	}
	got := []string{testkit.WaitFor(t, ran, "a hook"), testkit.WaitFor(t, ran, "another hook")}
	slices.Sort(got)
	if want := []string{"rollback 1", "rollback 2"}; !slices.Equal(got, want) {
		t.Errorf("hooks ran %q, want %q", got, want)
	}
}
