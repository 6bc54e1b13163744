package unit_test

import (
	"context"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedtest"
	"github.com/go-scoped/scoped/shared/unit"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(scopedtest.CheckScopesM(m))
}

type session struct{}

func (session) Commit(context.Context) error   { return nil }
func (session) Rollback(context.Context) error { return nil }
func (session) Close() error                   { return nil }

func TestSavedByHand(t *testing.T) {
	for _, hand := range []bool{false, true} {
		sessions := scoped.New(func(context.Context) (session, error) { return session{}, nil })
		ctx, scope := scoped.Begin(context.Background())
		if _, err := sessions.Current(ctx); err != nil {
			t.Fatal(err)
		}
		if hand {
			if err := sessions.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if got := unit.SavedByHand(scope); got != hand {
			t.Errorf("committed by hand %v: SavedByHand before the end = %v", hand, got)
		}
		if err := scope.Remove(); err != nil {
			t.Fatal(err)
		}
		if got := unit.SavedByHand(scope); got != hand {
			t.Errorf("committed by hand %v: SavedByHand after Remove = %v", hand, got)
		}
	}
}
