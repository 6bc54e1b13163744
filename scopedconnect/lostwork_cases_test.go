package scopedconnect_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedconnect"
	"github.com/go-scoped/scoped/scopedsql"
)

// The cases of commit 8aa76c7 through the connect interceptor, on the real
// PostgreSQL, for every client: a hand commit (ScopedSession.Commit) that
// failed, which the handler ignores before returning OK, is work lost: in
// Autocommit the client gets Internal saying "not saved" or "part ...
// saved", never OK; in Manual the handler's OK stands.
func TestLostWorkCases(t *testing.T) {
	type step struct {
		id   int64
		fail bool // its hand commit must fail; else it must succeed
	}
	cases := []struct {
		name  string
		mode  scopedconnect.CommitMode
		steps []step
		code  connect.Code // 0: OK
		text  string
		rows  []int64
	}{
		{"auto/lost alone", scopedconnect.Autocommit, []step{{1000000, true}}, connect.CodeInternal, "were not saved", nil},
		{"auto/saved then lost", scopedconnect.Autocommit, []step{{1, false}, {1000001, true}}, connect.CodeInternal, "part of the call's changes were saved", []int64{1}},
		{"manual/lost alone", scopedconnect.Manual, []step{{1000000, true}}, 0, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db, table := openDB(t) // ids >= 1,000,000 fail at COMMIT
			txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil))
			url := serve(t, &service{check: func(ctx context.Context, _ string) error {
				if _, err := db.ExecContext(ctx, "DELETE FROM "+table); err != nil { // each client's call starts afresh
					return err
				}
				for _, st := range c.steps {
					if err := insert(ctx, table, st.id); err != nil {
						return err
					}
					if err := txs.Commit(ctx); (err != nil) != st.fail {
						t.Errorf("hand commit of %d: %v, want failed=%v", st.id, err, st.fail)
					} // a failure is ignored by the handler
				}
				return nil
			}}, connect.WithInterceptors(scopedconnect.NewInterceptor(scopedconnect.WithCommitMode(c.mode), scopedconnect.Bind(txs))))
			for _, cl := range clients(t, url) {
				code, msg := cl.check(dbtest.Ctx(t), "")
				if connect.Code(code) != c.code || !strings.Contains(msg, c.text) {
					t.Errorf("%s: got %v %q, want %v %q", cl.name, connect.Code(code), msg, c.code, c.text)
				}
				if got := dbtest.IDs(t, db, table); !slices.Equal(got, c.rows) {
					t.Errorf("%s: ids %v, want %v", cl.name, got, c.rows)
				}
			}
		})
	}
}
