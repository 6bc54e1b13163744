package scopedconnect_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedconnect"
	"github.com/go-scoped/scoped/scopedsql"
)

// A unary call under WithRetry whose handler started a hand commit
// (txs.Commit) on a goroutine of its own, had a scoped.Run with
// scoped.WithRetry inside it ask for a retry, wrote a row whose COMMIT
// fails and returned before the hand commit finished: the retry decision
// must wait for that commit, which saves a row, and not run the call
// again (it did, once per attempt); the client learns that part was
// saved. The commit is let go only once the interceptor waits for it.
func TestRetryAskedDuringAHandCommitSavesOnce(t *testing.T) {
	db, table := openDB(t) // ids >= 1,000,000 fail at COMMIT
	started, release := make(chan struct{}, 8), make(chan struct{})
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithTeardownErrorHook(nil),
		scoped.WithCommit(func(_ context.Context, tx *sql.Tx) error {
			started <- struct{}{}
			<-release
			return tx.Commit()
		}))
	errConflict := errors.New("conflict")
	retryable := func(err error) bool { return errors.Is(err, errConflict) }
	var attempts atomic.Int64
	var commits sync.WaitGroup
	url := serve(t, &service{check: func(ctx context.Context, _ string) error {
		if err := insert(ctx, table, attempts.Add(1)); err != nil {
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
		if err := scoped.Run(ctx, func(context.Context) error { return errConflict }, scoped.WithRetry(2, retryable)); err == nil {
			t.Errorf("Run succeeded, want its error")
		}
		return insert(ctx, table, 1000000) // a new transaction, decided at the return
	}}, connect.WithInterceptors(scopedconnect.NewInterceptor(scopedconnect.WithCommitMode(scopedconnect.Autocommit),
		scopedconnect.Bind(txs), scopedconnect.WithRetry(3, retryable))))

	parked := testkit.CloseWhenParked("github.com/go-scoped/scoped.(*Scope).awaitPartial", release)
	code, msg := clients(t, url)[1].check(dbtest.Ctx(t), "") // the Connect protocol
	commits.Wait()
	if !parked() {
		t.Errorf("nothing waited for the hand commit")
	}
	if got := dbtest.IDs(t, db, table); attempts.Load() != 1 || !slices.Equal(got, []int64{1}) {
		t.Errorf("%d attempts, rows %v; want one attempt and row [1]", attempts.Load(), got)
	}
	if connect.Code(code) != connect.CodeInternal || !strings.Contains(msg, "part of the call's changes were saved") {
		t.Errorf("call: %v %q, want internal saying part was saved", connect.Code(code), msg)
	}
}
