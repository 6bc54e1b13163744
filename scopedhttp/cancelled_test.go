package scopedhttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

// A handler that committed its scope by hand keeps its answer when the
// request's context ends afterwards; one whose scope the safety net rolled
// back (the context ended while the session was open) is answered "not
// saved". The middleware tells the two apart by scoped.ErrScopeCancelled.
func TestHandCommitSurvivesALaterCancellation(t *testing.T) {
	for _, handCommit := range []bool{true, false} {
		fx := newFixture()
		var cancel context.CancelFunc
		h := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			session(t, r)
			if handCommit {
				scope, _ := scoped.FromContext(r.Context())
				if err := scope.Commit(); err != nil {
					t.Errorf("hand commit: %v", err)
				}
			}
			cancel() // the client goes away after the commit (or before it)
			scope, _ := scoped.FromContext(r.Context())
			testkit.WaitFor(t, doneChan(scope), "the scope to end")
			w.WriteHeader(http.StatusCreated)
		}))
		ctx, c := context.WithCancel(context.Background())
		cancel = c
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil).WithContext(ctx))
		want := http.StatusCreated
		if !handCommit {
			want = http.StatusInternalServerError
		}
		if rec.Code != want {
			t.Fatalf("hand commit %v: status %d, want %d (%s)", handCommit, rec.Code, want, rec.Body)
		}
		if handCommit {
			fx.wantEnded(t, "hand commit", 1, 0)
		} else {
			fx.wantEnded(t, "rolled back by the net", 0, 1)
		}
	}
}

// doneChan is closed once scope has ended.
func doneChan(scope *scoped.Scope) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for scope.Err() == nil {
			time.Sleep(time.Millisecond)
		}
	}()
	return ch
}
