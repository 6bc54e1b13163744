package scopedgrpc_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
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

// A unary call whose handler went on after a failed hand commit (its
// COMMIT refused by PostgreSQL: that row is lost), wrote a row in a
// second transaction that commits, and whose close then fails: part of
// the call was saved, part lost. The client must not get OK (the
// interceptor took ErrCommittedCloseFailed, which the outcome wraps too
// since 584da7a, for "everything saved"), and under WithRetry the call
// must not run again (the second row would be saved once per run).
func TestReviewFailedHandCommitThenCloseFailureIsNotOK(t *testing.T) {
	db, table := openDB(t) // ids >= 1,000,000 fail at COMMIT
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
	rest := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil),
		scoped.WithClose(func(context.Context, *sql.Tx) error { return errors.New("close failed") }))
	var runs atomic.Int64
	client := serve(t, &health{check: func(ctx context.Context) error {
		n := runs.Add(1)
		if err := insert(ctx, table, 1000000+n); err != nil {
			return err
		}
		if err := txs.Commit(ctx); err == nil {
			t.Errorf("hand commit succeeded, want PostgreSQL's refusal")
		}
		tx, err := rest.Current(ctx)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", n)
		return err
	}}, grpc.ChainUnaryInterceptor(scopedgrpc.UnaryServerInterceptor(scopedgrpc.WithCommitMode(scopedgrpc.Autocommit),
		scopedgrpc.Bind(txs), scopedgrpc.WithRetry(3, func(error) bool { return true }))))

	_, err := client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "part of the call's changes were saved") {
		t.Errorf("call: %v, want Internal saying part was saved", err)
	}
	if got := dbtest.IDs(t, db, table); runs.Load() != 1 || !slices.Equal(got, []int64{1}) {
		t.Errorf("%d runs, rows %v; want one run and row [1]", runs.Load(), got)
	}
}
