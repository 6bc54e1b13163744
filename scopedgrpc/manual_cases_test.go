package scopedgrpc_test

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
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

// A unary call that inserts id 1 and commits it by hand (txs.Commit),
// then (more) inserts id 2 in the scope's new transaction, and ends as
// end says, in Manual and Autocommit mode on the real engines: the status
// the server returns, its text, the rows and the unit's hooks must tell
// what was saved.
func TestHandCommitThenEveryEndingRPC(t *testing.T) {
	manual := scopedgrpc.WithCommitMode(scopedgrpc.Manual)
	auto := scopedgrpc.WithCommitMode(scopedgrpc.Autocommit)
	cases := []struct {
		name  string
		mode  scopedgrpc.Option
		more  bool
		end   string // "error", "ok", "panic", "cancel"
		code  codes.Code
		text  string
		rows  []int64
		hooks []string
	}{
		{"manual/error", manual, false, "error", codes.FailedPrecondition, "handler", []int64{1}, []string{"commit"}},
		{"manual/more/error", manual, true, "error", codes.FailedPrecondition, "handler", []int64{1}, nil},
		{"manual/more/ok", manual, true, "ok", codes.OK, "", []int64{1}, nil},
		{"manual/panic", manual, false, "panic", codes.Internal, "recovered", []int64{1}, []string{"commit"}},
		{"manual/more/panic", manual, true, "panic", codes.Internal, "recovered", []int64{1}, nil},
		{"manual/more/cancel", manual, true, "cancel", codes.OK, "", []int64{1}, nil},
		{"auto/error", auto, false, "error", codes.FailedPrecondition, "handler", []int64{1}, []string{"commit"}},
		{"auto/more/error", auto, true, "error", codes.FailedPrecondition, "handler", []int64{1}, nil},
		{"auto/more/ok", auto, true, "ok", codes.OK, "", []int64{1, 2}, []string{"commit"}},
		{"auto/more/panic", auto, true, "panic", codes.Internal, "recovered", []int64{1}, nil},
		{"auto/cancel", auto, false, "cancel", codes.Canceled, "had not committed", []int64{1}, []string{"commit"}},
		{"auto/more/cancel", auto, true, "cancel", codes.Canceled, "had not committed", []int64{1}, nil},
	}
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		db, err := sql.Open(s.Driver, s.DSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				table := dbtest.CreateIDTable(t, db, "mc_rpc")
				txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
				var hooks testkit.Log
				committed := make(chan struct{})
				h := &health{check: func(ctx context.Context) error {
					scoped.OnCommit(ctx, func(context.Context) { hooks.Add("commit") })
					scoped.OnRollback(ctx, func(context.Context) { hooks.Add("rollback") })
					tx, err := txs.Current(ctx)
					if err == nil {
						_, err = tx.ExecContext(ctx, s.InsertID(table), 1)
					}
					if err == nil {
						err = txs.Commit(ctx)
					}
					if err == nil && c.more {
						if tx, err = txs.Current(ctx); err == nil {
							_, err = tx.ExecContext(ctx, s.InsertID(table), 2)
						}
					}
					if err != nil {
						t.Errorf("handler: %v", err)
					}
					switch c.end {
					case "error":
						return status.Error(codes.FailedPrecondition, "handler says no")
					case "panic":
						panic("boom")
					case "cancel":
						close(committed)
						<-ctx.Done()
					}
					return nil
				}}
				fin, _, ended := finished()
				client := serve(t, h, grpc.ChainUnaryInterceptor(fin, recovery.UnaryServerInterceptor(recovered),
					scopedgrpc.UnaryServerInterceptor(c.mode, scopedgrpc.Bind(txs))))
				ctx, cancel := context.WithCancel(dbtest.Ctx(t))
				defer cancel()
				if c.end == "cancel" {
					go func() { <-committed; cancel() }()
				}
				_, _ = client.Check(ctx, &grpc_health_v1.HealthCheckRequest{})
				err := wait(t, ended) // what the server answered
				if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.text) {
					t.Errorf("server answered %v, want %v %q", err, c.code, c.text)
				}
				if ids := dbtest.IDs(t, db, table); !slices.Equal(ids, c.rows) {
					t.Errorf("rows %v, want %v", ids, c.rows)
				}
				if got := hooks.List(); !slices.Equal(got, c.hooks) {
					t.Errorf("hooks %q, want %q", got, c.hooks)
				}
			})
		}
	})
}
