package scopedriver_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/riverqueue/river/rivertype"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedriver"
)

// Review of 7ee7393 and c2b68a2: a job that fails after a hand commit of
// unknown outcome is cancelled (right: it may have saved that part), but
// its error says "part of its work is saved" and wraps
// ErrPartiallyCommitted, not ErrCommitUnknown: Work learns only
// SavedByHand, which the core sets for an unknown hand commit too.
func TestReview3JobFailingAfterAnUnknownHandCommitSaysMaybe(t *testing.T) {
	f := &fakeSession{commitErr: fmt.Errorf("%w: connection reset", scoped.ErrCommitUnknown)}
	sessions := fakeSessions(f)
	m := scopedriver.NewMiddleware(scopedriver.Bind(sessions))
	err := m.Work(context.Background(), runningJob, func(ctx context.Context) error {
		if _, err := sessions.Current(ctx); err != nil {
			return err
		}
		_ = sessions.Commit(ctx)
		return errors.New("review3: the job failed afterwards")
	})
	var cancel *rivertype.JobCancelError
	if !errors.As(err, &cancel) {
		t.Fatalf("Work = %v, want the job cancelled", err)
	}
	if !errors.Is(err, scoped.ErrCommitUnknown) || strings.Contains(err.Error(), "part of its work is saved") {
		t.Errorf("Work = %v, want ErrCommitUnknown and \"may be saved\"", err)
	}
}
