package scopedgrpc_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedgrpc"
	"github.com/go-scoped/scoped/scopedsql"
)

// A unary call under WithRetry whose handler committed part of its work
// by hand (ScopedSession.Commit, as the package documents for a handler
// that must commit early) and then failed retryably, at its own commit or
// in the handler, saved something: it must not be run again, or that part
// is saved once per attempt.
// errConflict stands for a retryable failure of a later step of a call.
var errConflict = errors.New("conflict")

func retryable(err error) bool { return errors.Is(err, errConflict) || scopedsql.Retryable(err) }

func TestRetryAfterHandCommitSavesOnce(t *testing.T) {
	for _, where := range []string{"commit", "handler"} {
		t.Run(where, func(t *testing.T) {
			db, table := openDB(t)
			txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
			var attempts atomic.Int64
			client := serve(t, &health{check: func(ctx context.Context) error {
				n := attempts.Add(1)
				if err := insert(ctx, table, 100+n); err != nil {
					return err
				}
				if err := txs.Commit(ctx); err != nil { // saved: row 100+n
					return err
				}
				if where == "handler" {
					return errConflict
				}
				// A new transaction of the same scope whose COMMIT fails
				// with a serialization failure.
				return insert(ctx, table, -n)
			}}, grpc.ChainUnaryInterceptor(scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit),
				scopedgrpc.Bind(txs), scopedgrpc.WithRetry(3, retryable))))

			_, err := client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{})
			if status.Code(err) == codes.OK {
				t.Errorf("call succeeded, want an error: its last step failed")
			} else {
				t.Logf("call: %v", err)
			}
			if got := dbtest.IDs(t, db, table); !slices.Equal(got, []int64{101}) {
				t.Errorf("rows %v after %d runs, want [101]: the hand-committed part saved once, the call not run again", got, attempts.Load())
			}
		})
	}
}
