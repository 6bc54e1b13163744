package scopedgrpc_test

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// A unary call under WithRetry whose handler started a hand commit
// (txs.Commit) on a goroutine of its own and returned before that commit
// finished, after failing retryably (its own error, or a scoped.Run with
// scoped.WithRetry inside it asking for a retry): the retry decision must
// wait for the commit, which saves a row, and not run the call again (it
// did: the decision read "nothing committed by hand" while the commit
// ran, and each attempt saved its row). The commit is let go only once
// the interceptor waits for it.
func TestRetryDuringAHandCommitSavesOnce(t *testing.T) {
	for _, c := range []struct {
		name string
		ask  bool // a Run inside asks for the retry, the handler then writes a row whose COMMIT fails and returns OK; else it returns errConflict
		code codes.Code
		text string
	}{
		{"handler error", false, codes.Unknown, "conflict"}, // the handler's error stands
		{"asked, rest fails at commit", true, codes.Internal, "part of the call's changes were saved"},
	} {
		t.Run(c.name, func(t *testing.T) {
			db, table := openDB(t) // ids >= 1,000,000 fail at COMMIT
			started, release := make(chan struct{}, 8), make(chan struct{})
			txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil),
				scoped.WithCommit(func(_ context.Context, tx *sql.Tx) error {
					started <- struct{}{}
					<-release
					return tx.Commit()
				}))
			var attempts atomic.Int64
			var commits sync.WaitGroup
			client := serve(t, &health{check: func(ctx context.Context) error {
				n := attempts.Add(1)
				if err := insert(ctx, table, n); err != nil {
					return err
				}
				commits.Add(1)
				go func() {
					defer commits.Done()
					if err := txs.Commit(ctx); err != nil {
						t.Errorf("hand commit: %v", err)
					}
				}()
				<-started
				if !c.ask {
					return errConflict
				}
				if err := scoped.Run(ctx, func(context.Context) error { return errConflict }, scoped.WithRetry(2, retryable)); err == nil {
					t.Errorf("Run succeeded, want its error")
				}
				return insert(ctx, table, 1000000) // a new transaction, decided at the return
			}}, grpc.ChainUnaryInterceptor(scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit),
				scopedgrpc.Bind(txs), scopedgrpc.WithRetry(3, retryable))))

			parked := testkit.CloseWhenParked("github.com/go-scoped/scoped.(*Scope).awaitPartial", release)
			_, err := client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{})
			commits.Wait()
			if !parked() {
				t.Errorf("nothing waited for the hand commit")
			}
			if got := dbtest.IDs(t, db, table); attempts.Load() != 1 || !slices.Equal(got, []int64{1}) {
				t.Errorf("%d attempts, rows %v; want one attempt and row [1]", attempts.Load(), got)
			}
			if st := status.Convert(err); st.Code() != c.code || !strings.Contains(st.Message(), c.text) {
				t.Errorf("call: %v, want %v %q", err, c.code, c.text)
			}
		})
	}
}
