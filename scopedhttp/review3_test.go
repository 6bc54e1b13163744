package scopedhttp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
)

// Review of c2b68a2: what a client is told after a hand commit
// (ScopedSession.Commit) whose outcome is unknown.

// r3Tx is a transaction whose commit fails with err, having saved (counted
// in saved) unless lose is set.
type r3Tx struct {
	saved *int
	err   error
	lose  bool
}

func (x *r3Tx) Commit(context.Context) error {
	if !x.lose {
		*x.saved++
	}
	return x.err
}
func (x *r3Tx) Rollback(context.Context) error { return nil }

var (
	errR3Unknown  = fmt.Errorf("%w: connection lost during COMMIT", scoped.ErrCommitUnknown)
	errR3Conflict = errors.New("review3: conflict")
)

func r3Session(saved *int, err error, lose bool) *scoped.ScopedSession[*r3Tx] {
	return scoped.New(func(context.Context) (*r3Tx, error) { return &r3Tx{saved: saved, err: err, lose: lose}, nil },
		scoped.WithTeardownErrorHook(nil))
}

// Not a defect: a handler whose hand commit's outcome is unknown and that
// answers 200 gets 500 "may have been saved", whatever the rest does, and
// WithRetry does not run it again (it would save that part twice).
func TestReview3UnknownHandCommitAnswer(t *testing.T) {
	for _, rest := range []string{"nothing", "commits", "conflicts"} {
		t.Run(rest, func(t *testing.T) {
			saved, runs := 0, 0
			hand := r3Session(&saved, errR3Unknown, false)
			other := r3Session(&saved, nil, false)
			if rest == "conflicts" {
				other = r3Session(&saved, errR3Conflict, true)
			}
			h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
				scopedhttp.WithRetry(3, func(err error) bool { return errors.Is(err, errR3Conflict) }))(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					runs++
					ctx := r.Context()
					if _, err := hand.Current(ctx); err != nil {
						t.Error(err)
					}
					if err := hand.Commit(ctx); !errors.Is(err, scoped.ErrCommitUnknown) {
						t.Errorf("hand commit = %v, want ErrCommitUnknown", err)
					}
					if rest != "nothing" {
						if _, err := other.Current(ctx); err != nil {
							t.Error(err)
						}
					}
				}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
			if runs != 1 {
				t.Errorf("%d runs, want 1: the hand commit may have saved", runs)
			}
			body := rec.Body.String()
			if rec.Code != http.StatusInternalServerError || strings.Contains(body, "not saved") || strings.Contains(body, "retry it") {
				t.Errorf("client got %d %q, want 500 that says nothing of \"not saved\" or retrying", rec.Code, body)
			}
			if rest != "conflicts" && !strings.Contains(body, "may have been saved") {
				t.Errorf("client got %q, want \"may have been saved\"", body)
			}
		})
	}
}

// A handler whose hand commit's outcome is unknown, still holding another
// transaction when WithTimeout's deadline passes: the net rolls that one
// back and the client (still there: the deadline is the server's) is told
// "partially saved", ErrPartiallyCommitted, as though the hand commit had
// landed. It may not have: the answer is "may have been saved" (the
// middleware's rolledBack asks unithooks.SavedByHand, which counts an
// unknown hand commit as saved and cannot tell the two apart).
func TestReview3UnknownHandCommitThenTheDeadlineIsNotPartiallySaved(t *testing.T) {
	saved := 0
	hand := r3Session(&saved, errR3Unknown, false)
	other := r3Session(&saved, nil, false)
	var got error
	h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.WithTimeout(50*time.Millisecond),
		scopedhttp.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
			got = err
			scopedhttp.DefaultErrorHandler(w, r, err)
		}))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if _, err := hand.Current(ctx); err != nil {
			t.Error(err)
		}
		_ = hand.Commit(ctx)
		if _, err := other.Current(ctx); err != nil {
			t.Error(err)
		}
		select { // a slow query, cut short by the deadline
		case <-ctx.Done():
		case <-time.After(bound):
			t.Error("the deadline never passed")
		}
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if !errors.Is(got, scoped.ErrCommitUnknown) || !strings.Contains(rec.Body.String(), "may have been saved") {
		t.Errorf("error handler got %v, client %d %q; want ErrCommitUnknown, \"may have been saved\"", got, rec.Code, rec.Body)
	}
}
