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

// Review of ffe6217: the job's state after hand commits that saved, failed
// or are of unknown outcome, followed by the middleware's commit (saving,
// or refused), or by the job's failure: cancelled whenever part of the
// work is or may be saved (River would save it again), its error then
// "may be saved" (ErrCommitUnknown) when no hand commit is known to have
// saved and nothing else was; left to River's retry when nothing was.
func TestReview4JobAfterHandCommits(t *testing.T) {
	unknown := fmt.Errorf("%w: connection reset", scoped.ErrCommitUnknown)
	for _, kinds := range [][]string{{"ok"}, {"failed"}, {"unknown"}, {"failed", "unknown"}} {
		for _, then := range []string{"commit", "refused", "job fails"} {
			k := strings.Join(kinds, "+")
			t.Run(k+" then "+then, func(t *testing.T) {
				var hands []*scoped.ScopedSession[*fakeSession]
				for _, kind := range kinds {
					f := &fakeSession{}
					switch kind {
					case "failed":
						f.commitErr = errors.New("review4: hand commit refused")
					case "unknown":
						f.commitErr = unknown
					}
					hands = append(hands, fakeSessions(f))
				}
				rest := &fakeSession{}
				if then == "refused" {
					rest.commitErr = errors.New("review4: commit refused")
				}
				rests := fakeSessions(rest)
				m := scopedriver.NewMiddleware(scopedriver.Bind(rests))
				err := m.Work(context.Background(), runningJob, func(ctx context.Context) error {
					for _, h := range hands {
						if _, err := h.Current(ctx); err != nil {
							return err
						}
						_ = h.Commit(ctx)
					}
					if _, err := rests.Current(ctx); err != nil {
						return err
					}
					if then == "job fails" {
						return errors.New("review4: the job failed")
					}
					return nil
				})
				var cancel *rivertype.JobCancelError
				cancelled := errors.As(err, &cancel)
				restSaved := then == "commit"
				switch {
				case k == "ok" && restSaved:
					if err != nil {
						t.Errorf("Work = %v, want nil", err)
					}
				case k == "failed" && !restSaved:
					if err == nil || cancelled {
						t.Errorf("Work = %v, want an error River retries: nothing was saved", err)
					}
				case strings.Contains(k, "unknown") && !restSaved:
					if !cancelled || !errors.Is(err, scoped.ErrCommitUnknown) || !strings.Contains(err.Error(), "may be saved") {
						t.Errorf("Work = %v, want the job cancelled, ErrCommitUnknown, \"may be saved\"", err)
					}
				default: // something is saved for sure
					if !cancelled || !strings.Contains(err.Error(), "saved") {
						t.Errorf("Work = %v, want the job cancelled: part of its work is saved", err)
					}
				}
			})
		}
	}
}
