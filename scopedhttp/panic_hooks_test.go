package scopedhttp_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

// A handler that panics has its unit rolled back at once, but its
// OnRollback hooks run after the answer, as every other request's do
// (spec §12): the recoverer outside the middleware answers only once the
// panic has left it, so a slow hook run on the way out would hold the
// client's 500 back.
func TestPanicRunsItsHooksAfterTheRecoverersAnswer(t *testing.T) {
	for _, mode := range []scopedhttp.CommitMode{scopedhttp.Manual, scopedhttp.Autocommit} {
		t.Run(mode.String(), func(t *testing.T) {
			fx := newFixture()
			answered := make(chan struct{})
			hookSawAnswer := make(chan bool, 1)
			h := fx.middleware(scopedhttp.WithCommitMode(mode))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				session(t, r)
				_ = scoped.OnRollback(r.Context(), func(context.Context) {
					select {
					case <-answered:
						hookSawAnswer <- true
					case <-time.After(bound / 3): // only when the hook holds the answer back
						hookSawAnswer <- false
					}
				})
				panic("handler bug")
			}))
			recoverer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer func() {
					if p := recover(); p != nil {
						http.Error(w, "recovered", http.StatusInternalServerError)
					}
				}()
				h.ServeHTTP(w, r)
			})
			ts := httptest.NewServer(recoverer)
			defer ts.Close()
			resp, err := ts.Client().Post(ts.URL, "text/plain", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			close(answered)
			if resp.StatusCode != http.StatusInternalServerError {
				t.Errorf("status %d, want the recoverer's 500", resp.StatusCode)
			}
			if !testkit.WaitFor(t, hookSawAnswer, "the OnRollback hook") {
				t.Error("the OnRollback hook of a panicking request ran before the client had its answer")
			}
			if commits, rollbacks := fx.ended(); commits != 0 || rollbacks != 1 {
				t.Errorf("commits %d, rollbacks %d; want 0 and 1", commits, rollbacks)
			}
			ts.Client().CloseIdleConnections()
		})
	}
}
