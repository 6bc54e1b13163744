package rpcscope_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/rpcscope"
)

// Review of c2b68a2: a unary call whose handler committed a session by
// hand with an unknown outcome (COMMIT sent, connection lost) is not run
// again under WithRetry, whatever it returns, and a commit point reached
// afterwards answers Internal "may have been saved", never OK, Aborted or
// "not saved".
func TestReview3UnknownHandCommitUnary(t *testing.T) {
	errUnknown := fmt.Errorf("%w: connection lost during COMMIT", scoped.ErrCommitUnknown)
	errConflict := errors.New("review3: conflict")
	for _, returns := range []string{"ok", "conflict"} {
		t.Run(returns, func(t *testing.T) {
			saved, runs := 0, 0
			hand := scoped.New(func(context.Context) (*tx, error) { return &tx{}, nil },
				scoped.WithCommit(func(context.Context, *tx) error { saved++; return errUnknown }),
				scoped.WithRollback(func(context.Context, *tx) error { return nil }),
				scoped.WithTeardownErrorHook(nil))
			cfg := config(pkg.Mode(rpcscope.Autocommit), pkg.Retry(3, func(err error) bool { return errors.Is(err, errConflict) }))
			_, err := rpcscope.Unary(cfg, context.Background(), func(ctx context.Context) (struct{}, error) {
				runs++
				if _, err := hand.Current(ctx); err != nil {
					return struct{}{}, err
				}
				_ = hand.Commit(ctx)
				if returns == "conflict" {
					return struct{}{}, errConflict
				}
				return struct{}{}, nil
			})
			if runs != 1 || saved != 1 {
				t.Errorf("%d runs saved %d times, want 1 and 1", runs, saved)
			}
			switch returns {
			case "ok":
				if codeOf(err) != internal || !strings.Contains(err.Error(), "may have been saved") {
					t.Errorf("call = %d %v, want Internal saying the changes may have been saved", codeOf(err), err)
				}
			default:
				if !errors.Is(err, errConflict) {
					t.Errorf("call = %v, want the handler's error", err)
				}
			}
		})
	}
}
