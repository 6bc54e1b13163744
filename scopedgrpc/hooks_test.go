package scopedgrpc_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedgrpc"
	"github.com/go-scoped/scoped/scopedsql"
)

// With StatsHandler, a call's unit hooks run after its response and
// status have been sent: the client has its answer while the hook is
// still running. A call that committed runs its OnCommit hook (its row
// saved by then), one that failed its OnRollback hook (its row gone).
func TestHooksRunAfterTheResponse(t *testing.T) {
	db, table := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	started := make(chan string, 1)
	finished := make(chan struct{}, 1)
	release := make(chan struct{})
	var mu sync.Mutex
	var ran []string
	next := int64(0)
	client := serve(t, &health{check: func(ctx context.Context) error {
		next++
		if err := insert(ctx, table, next); err != nil {
			return err
		}
		block := func(kind string) func(context.Context) {
			return func(context.Context) {
				started <- kind
				<-release
				mu.Lock()
				ran = append(ran, kind)
				mu.Unlock()
				finished <- struct{}{}
			}
		}
		_ = scoped.OnCommit(ctx, block("commit"))
		_ = scoped.OnRollback(ctx, block("rollback"))
		if next == 2 {
			return status.Error(codes.FailedPrecondition, "no")
		}
		return nil
	}}, grpc.StatsHandler(scopedgrpc.StatsHandler()),
		grpc.ChainUnaryInterceptor(scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(users))))
	t.Cleanup(func() { close(release) }) // a failed test's hook returns: before the server stops

	for _, c := range []struct {
		code codes.Code
		hook string
		rows []int64
	}{
		{codes.OK, "commit", []int64{1}},
		{codes.FailedPrecondition, "rollback", []int64{1}},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{})
			done <- err
		}()
		err := testkit.WaitFor(t, done, "the response while the hook runs")
		if status.Code(err) != c.code {
			t.Fatalf("call: %v, want %v", err, c.code)
		}
		if kind := testkit.WaitFor(t, started, "the hook to start"); kind != c.hook {
			t.Fatalf("hook %s started, want %s", kind, c.hook)
		}
		if got := dbtest.IDs(t, db, table); !slices.Equal(got, c.rows) {
			t.Errorf("rows while the %s hook runs: %v, want %v", c.hook, got, c.rows)
		}
		release <- struct{}{} // the hook is waiting for it
		testkit.WaitFor(t, finished, "the hook to finish")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"commit", "rollback"}; !slices.Equal(ran, want) {
		t.Errorf("hooks ran %q, want %q", ran, want)
	}
}

// Without StatsHandler the hooks still run, when the interceptor ends the
// scope: before the response.
func TestHooksRunWithoutStatsHandler(t *testing.T) {
	db, table := openDB(t)
	users := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	ran := make(chan struct{}, 1)
	client := serve(t, &health{check: func(ctx context.Context) error {
		if err := insert(ctx, table, 1); err != nil {
			return err
		}
		return scoped.OnCommit(ctx, func(context.Context) { ran <- struct{}{} })
	}}, grpc.ChainUnaryInterceptor(scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(users))))
	if _, err := client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	default:
		t.Error("the OnCommit hook had not run when the response arrived")
	}
}
