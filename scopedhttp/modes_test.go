package scopedhttp_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
)

// statuses are the response statuses every commit mode is checked on.
var statuses = []int{200, 201, 204, 301, 302, 304, 400, 401, 404, 409, 422, 500, 502, 503}

func TestCommitModesEndEachStatusWithExactlyOneCommitOrRollback(t *testing.T) {
	modes := []struct {
		mode    scopedhttp.CommitMode
		commits func(status int) bool // nil: Manual, the middleware decides nothing
	}{
		{scopedhttp.Manual, nil},
		{scopedhttp.Autocommit, func(s int) bool { return s >= 200 && s < 300 }},
		{scopedhttp.AutocommitIncludeRedirect, func(s int) bool { return s >= 200 && s < 400 }},
	}
	for _, m := range modes {
		for _, status := range statuses {
			t.Run(fmt.Sprintf("Mode=%v/Status=%d", m.mode, status), func(t *testing.T) {
				fx := newFixture()
				h := fx.middleware(scopedhttp.WithCommitMode(m.mode))(http.HandlerFunc(
					func(w http.ResponseWriter, r *http.Request) {
						session(t, r)
						w.WriteHeader(status)
					}))
				spy := newSpy()
				var atStatusCommits, atStatusRollbacks int
				spy.onWriteHeader = func(int) { atStatusCommits, atStatusRollbacks = fx.ended() }

				h.ServeHTTP(spy, httptest.NewRequest(http.MethodPost, "/items", nil))

				if spy.code != status {
					t.Errorf("server got status %d, want %d", spy.code, status)
				}
				if n := fx.created(); n != 1 {
					t.Errorf("factory ran %d times, want 1", n)
				}
				// At the moment the status reached the server, the
				// automatic modes must already have decided; Manual must
				// not have touched the handler's session.
				wantC, wantR := 0, 0
				switch {
				case m.commits == nil:
				case m.commits(status):
					wantC = 1
				default:
					wantR = 1
				}
				if atStatusCommits != wantC || atStatusRollbacks != wantR {
					t.Errorf("when the status reached the server: %d commit(s), %d rollback(s); want %d, %d",
						atStatusCommits, atStatusRollbacks, wantC, wantR)
				}
				if m.commits == nil {
					wantR = 1 // Manual: rolled back when the handler returns
				}
				fx.wantEnded(t, "after the request", wantC, wantR)
			})
		}
	}
}

func TestManualIsTheDefaultMode(t *testing.T) {
	fx := newFixture()
	h := fx.middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		session(t, r)
		w.WriteHeader(http.StatusCreated)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", nil))
	fx.wantEnded(t, "201 without a commit mode", 0, 1)
}

func TestManualCommitsWhatTheHandlerCommitsOnlyOnce(t *testing.T) {
	commits := []struct {
		name   string
		commit func(fx *fixture, r *http.Request) error
	}{
		{"ScopedSession.Commit", func(fx *fixture, r *http.Request) error { return fx.reg.Commit(r.Context()) }},
		{"Scope.Commit", func(_ *fixture, r *http.Request) error {
			scope, ok := scoped.FromContext(r.Context())
			if !ok {
				return errors.New("no scope in the request's context")
			}
			return scope.Commit()
		}},
	}
	for _, c := range commits {
		for _, status := range []int{200, 201, 303, 404, 500} {
			t.Run(fmt.Sprintf("Via=%s/Status=%d", c.name, status), func(t *testing.T) {
				fx := newFixture()
				h := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Manual))(http.HandlerFunc(
					func(w http.ResponseWriter, r *http.Request) {
						session(t, r)
						if err := c.commit(fx, r); err != nil {
							t.Errorf("commit in handler: %v", err)
						}
						w.WriteHeader(status)
					}))
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
				if rec.Code != status {
					t.Errorf("status %d, want %d", rec.Code, status)
				}
				fx.wantEnded(t, "handler committed", 1, 0)
			})
		}
	}
}

func TestCommitPolicyDecidesOnTheStatusOnce(t *testing.T) {
	cases := []struct {
		name   string
		status int // 0: the handler writes nothing
		commit bool
	}{
		{"Accepted", http.StatusAccepted, true},
		{"Conflict", http.StatusConflict, true},
		{"OK", http.StatusOK, false},
		{"InternalServerError", http.StatusInternalServerError, false},
		{"Implicit200", 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fx := newFixture()
			var seen []int
			policy := func(status int) bool {
				seen = append(seen, status)
				return status == http.StatusAccepted || status == http.StatusConflict
			}
			h := fx.middleware(scopedhttp.WithCommitPolicy(policy))(http.HandlerFunc(
				func(w http.ResponseWriter, r *http.Request) {
					session(t, r)
					if c.status != 0 {
						w.WriteHeader(c.status)
						_, _ = w.Write([]byte("body"))
					}
				}))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPut, "/", nil))

			want := c.status
			if want == 0 {
				want = http.StatusOK
			}
			if len(seen) != 1 || seen[0] != want {
				t.Errorf("policy saw %v, want [%d]", seen, want)
			}
			if c.commit {
				fx.wantEnded(t, "policy true", 1, 0)
			} else {
				fx.wantEnded(t, "policy false", 0, 1)
			}
		})
	}
}

func TestCommitPolicyReplacesCommitMode(t *testing.T) {
	fx := newFixture()
	never := func(int) bool { return false }
	h := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.WithCommitPolicy(never))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			session(t, r)
			w.WriteHeader(http.StatusOK)
		}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	fx.wantEnded(t, "Autocommit replaced by a policy that never commits", 0, 1)
}

// The commit point is also the first Write (implicit 200) and the
// handler's return when it wrote nothing.
func TestImplicit200IsDecidedLikeAnExplicitOne(t *testing.T) {
	handlers := []struct {
		name  string
		serve func(w http.ResponseWriter)
	}{
		{"WriteWithoutWriteHeader", func(w http.ResponseWriter) { _, _ = w.Write([]byte("hello")) }},
		{"NothingWritten", func(http.ResponseWriter) {}},
	}
	modes := []struct {
		mode       scopedhttp.CommitMode
		wantCommit bool
	}{
		{scopedhttp.Manual, false},
		{scopedhttp.Autocommit, true},
		{scopedhttp.AutocommitIncludeRedirect, true},
	}
	for _, hc := range handlers {
		for _, m := range modes {
			t.Run(fmt.Sprintf("%s/Mode=%v", hc.name, m.mode), func(t *testing.T) {
				fx := newFixture()
				h := fx.middleware(scopedhttp.WithCommitMode(m.mode))(http.HandlerFunc(
					func(w http.ResponseWriter, r *http.Request) {
						session(t, r)
						hc.serve(w)
					}))
				spy := newSpy()
				atStatus := -1
				spy.onWriteHeader = func(int) { atStatus, _ = fx.ended() }
				h.ServeHTTP(spy, httptest.NewRequest(http.MethodGet, "/", nil))

				if m.wantCommit {
					fx.wantEnded(t, "implicit 200", 1, 0)
					if spy.code != 0 && atStatus != 1 {
						t.Errorf("status reached the server before the commit")
					}
				} else {
					fx.wantEnded(t, "implicit 200", 0, 1)
				}
				if hc.name == "NothingWritten" && spy.code != 0 {
					t.Errorf("middleware wrote status %d for a handler that wrote nothing; net/http sends the implicit 200", spy.code)
				}
			})
		}
	}
}

func TestCommitModeNames(t *testing.T) {
	for mode, want := range map[scopedhttp.CommitMode]string{
		scopedhttp.Manual:                    "manual",
		scopedhttp.Autocommit:                "autocommit",
		scopedhttp.AutocommitIncludeRedirect: "autocommit_include_redirect",
		scopedhttp.CommitMode(42):            "CommitMode(invalid)",
	} {
		if got := mode.String(); got != want {
			t.Errorf("CommitMode(%d).String() = %q, want %q", int(mode), got, want)
		}
	}
}

func TestMisuseAtConstructionPanics(t *testing.T) {
	cases := map[string]func(){
		"Middleware(nil handler)": func() { scopedhttp.Middleware()(nil) },
		"WithCommitMode(invalid)": func() { scopedhttp.WithCommitMode(scopedhttp.CommitMode(42)) },
		"WithCommitPolicy(nil)":   func() { scopedhttp.WithCommitPolicy(nil) },
		"WithErrorHandler(nil)":   func() { scopedhttp.WithErrorHandler(nil) },
		"Bind(nil)":               func() { scopedhttp.Bind[*fakeTx](nil) },
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				p := recover()
				if s, ok := p.(string); !ok || !strings.HasPrefix(s, "scopedhttp: ") {
					t.Errorf("panic %v, want a string starting with %q", p, "scopedhttp: ")
				}
			}()
			f()
		})
	}
}

// In the automatic modes a handler may still end the scope itself before
// the commit point; the middleware then neither ends it again nor turns
// the response into an error.
func TestAutomaticModeAfterHandlerEndedTheScopeItself(t *testing.T) {
	cases := []struct {
		name         string
		end          func(fx *fixture, r *http.Request) error
		wantC, wantR int
	}{
		{"Scope.Commit", func(_ *fixture, r *http.Request) error {
			scope, _ := scoped.FromContext(r.Context())
			return scope.Commit()
		}, 1, 0},
		{"Scope.Remove", func(_ *fixture, r *http.Request) error {
			scope, _ := scoped.FromContext(r.Context())
			return scope.Remove()
		}, 0, 1},
		{"ScopedSession.Commit", func(fx *fixture, r *http.Request) error { return fx.reg.Commit(r.Context()) }, 1, 0},
		{"ScopedSession.Remove", func(fx *fixture, r *http.Request) error { return fx.reg.Remove(r.Context()) }, 0, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fx := newFixture()
			h := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(
				func(w http.ResponseWriter, r *http.Request) {
					session(t, r)
					if err := c.end(fx, r); err != nil {
						t.Errorf("%s: %v", c.name, err)
					}
					w.WriteHeader(http.StatusCreated)
					_, _ = w.Write([]byte("created"))
				}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
			if rec.Code != http.StatusCreated || rec.Body.String() != "created" {
				t.Errorf("client got %d %q, want the handler's 201", rec.Code, rec.Body.String())
			}
			fx.wantEnded(t, c.name, c.wantC, c.wantR)
			if errs := fx.errs(); len(errs) != 0 {
				t.Errorf("teardown errors: %v", errs)
			}
		})
	}
}
