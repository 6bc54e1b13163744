package scopedhttp_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-scoped/scoped/scopedhttp"
)

// Review of ffe6217: what a client is told, and whether WithRetry runs the
// request again, after hand commits (ScopedSession.Commit) that saved,
// failed or are of unknown outcome, followed by the automatic commit of
// another transaction that saves or conflicts, or by the deadline.
func TestReview4HandCommitAnswers(t *testing.T) {
	for _, kinds := range [][]string{{"ok"}, {"failed"}, {"unknown"}, {"failed", "unknown"}} {
		for _, then := range []string{"commit", "conflict", "deadline"} {
			name := strings.Join(kinds, "+") + " then " + then
			t.Run(name, func(t *testing.T) {
				has := func(k string) bool { return strings.Contains(strings.Join(kinds, "+"), k) }

				saved, runs := 0, 0
				h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
					scopedhttp.WithTimeout(50*time.Millisecond),
					scopedhttp.WithRetry(3, func(err error) bool { return errors.Is(err, errR3Conflict) }))(
					http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						runs++
						ctx := r.Context()
						for _, k := range kinds {
							s := r3Session(&saved, nil, false)
							switch k {
							case "failed":
								s = r3Session(&saved, errors.New("refused"), true)
							case "unknown":
								s = r3Session(&saved, errR3Unknown, false)
							}
							if _, err := s.Current(ctx); err != nil {
								t.Error(err)
							}
							_ = s.Commit(ctx)
						}
						rest := r3Session(&saved, nil, false)
						if then == "conflict" {
							rest = r3Session(&saved, errR3Conflict, true)
						}
						if _, err := rest.Current(ctx); err != nil {
							t.Error(err)
						}
						if then == "deadline" {
							select { // a slow query, cut short by the deadline
							case <-ctx.Done():
							case <-time.After(bound):
								t.Error("the deadline never passed")
							}
						}
					}))
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
				body := rec.Body.String()
				maySave := has("ok") || has("unknown")
				wantRuns := 1
				if then == "conflict" && !maySave {
					wantRuns = 3 // nothing saved: run again, up to WithRetry's bound
				}
				if runs != wantRuns {
					t.Errorf("%d runs, want %d", runs, wantRuns)
				}
				var want string
				switch {
				case has("unknown") && !has("ok") && then != "commit":
					want = "may have been saved"
				case has("unknown"):
					want = "saved" // "may have been saved" or "partially saved"
				case has("ok") && then == "commit":
					want = "" // everything saved
				case has("ok") || has("failed") && then == "commit":
					want = "partially saved"
				default:
					want = "not saved"
				}
				if want == "" {
					if rec.Code != http.StatusOK {
						t.Errorf("client got %d %q, want 200", rec.Code, body)
					}
					return
				}
				if !strings.Contains(body, want) || maySave && (strings.Contains(body, "not saved") || strings.Contains(body, "retry it")) {
					t.Errorf("client got %d %q, want %q", rec.Code, body, want)
				}
			})
		}
	}
}
