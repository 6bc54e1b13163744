package scopedgrpc_test

import (
	"context"
	"slices"
	"strings"
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

// The cases of commit 8aa76c7 through the unary interceptor, on the real
// PostgreSQL: a hand commit (ScopedSession.Commit) that failed, which the
// handler ignores before returning OK, is work lost: in Autocommit the
// client must not get OK but Internal saying "not saved" (nothing saved)
// or "part ... saved"; in Manual the handler's OK stands (it commits what
// it wants) and the unit's hooks tell the outcome. A transaction removed
// by hand (ScopedSession.Remove) is the handler's decision: OK.
func TestLostWorkCases(t *testing.T) {
	type step struct {
		id  int64
		end string // "commit" (must succeed), "fail" (must fail), "remove", "" (left to the interceptor)
	}
	auto := scopedgrpc.WithCommitMode(scopedgrpc.Autocommit)
	manual := scopedgrpc.WithCommitMode(scopedgrpc.Manual)
	cases := []struct {
		name  string
		mode  scopedgrpc.Option
		steps []step
		code  codes.Code
		text  string
		rows  []int64
		hooks []string
	}{
		{"auto/lost alone", auto, []step{{1000000, "fail"}}, codes.Internal, "were not saved", nil, []string{"rollback"}},
		{"auto/saved then lost", auto, []step{{1, "commit"}, {1000001, "fail"}}, codes.Internal, "part of the call's changes were saved", []int64{1}, nil},
		{"auto/lost then rest", auto, []step{{1000000, "fail"}, {2, ""}}, codes.Internal, "part of the call's changes were saved", []int64{2}, nil},
		{"auto/removed by hand then rest", auto, []step{{3, "remove"}, {4, ""}}, codes.OK, "", []int64{4}, []string{"commit"}},
		{"manual/lost alone", manual, []step{{1000000, "fail"}}, codes.OK, "", nil, []string{"rollback"}},
		{"manual/saved then lost", manual, []step{{5, "commit"}, {1000001, "fail"}}, codes.OK, "", []int64{5}, nil},
		{"manual/saved, removed by hand", manual, []step{{6, "commit"}, {7, "remove"}}, codes.OK, "", []int64{6}, []string{"commit"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, table := openDB(t) // a fresh table whose ids >= 1,000,000 fail at COMMIT
			txs := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))
			var hooks testkit.Log
			h := &health{check: func(ctx context.Context) error {
				scoped.OnCommit(ctx, func(context.Context) { hooks.Add("commit") })
				scoped.OnRollback(ctx, func(context.Context) { hooks.Add("rollback") })
				for _, st := range c.steps {
					if err := insert(ctx, table, st.id); err != nil {
						t.Errorf("insert %d: %v", st.id, err)
						return err
					}
					switch st.end {
					case "commit":
						if err := txs.Commit(ctx); err != nil {
							t.Errorf("hand commit of %d: %v", st.id, err)
						}
					case "fail":
						if err := txs.Commit(ctx); err == nil {
							t.Errorf("hand commit of %d succeeded; the table should fail it", st.id)
						} // ignored by the handler
					case "remove":
						if err := txs.Remove(ctx); err != nil {
							t.Errorf("hand remove of %d: %v", st.id, err)
						}
					}
				}
				return nil
			}}
			fin, _, ended := finished()
			client := serve(t, h, grpc.ChainUnaryInterceptor(fin, scopedgrpc.UnaryServerInterceptor(c.mode, scopedgrpc.Bind(txs))))
			_, _ = client.Check(dbtest.Ctx(t), &grpc_health_v1.HealthCheckRequest{})
			err := wait(t, ended)
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
}
