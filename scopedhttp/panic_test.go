package scopedhttp_test

import (
	"context"

	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

// panicValue is a panic value whose identity the test can check.
type panicValue struct{ msg string }

// recovered serves h with a recovery middleware outside it, as an
// application would, and returns what that middleware recovered and the
// commits and rollbacks at that moment.
func recovered(fx *fixture, h http.Handler, w http.ResponseWriter) (p any, commits, rollbacks int) {
	outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p = recover()
			commits, rollbacks = fx.ended()
		}()
		h.ServeHTTP(w, r)
	})
	outer.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", nil))
	return p, commits, rollbacks
}

func TestPanicBeforeCommitPointRollsBackThenRepanicsWithTheSameValue(t *testing.T) {
	values := []struct {
		name string
		v    any
	}{
		{"String", "boom"},
		{"Pointer", &panicValue{"boom"}},
		{"ErrAbortHandler", http.ErrAbortHandler},
		{"Error", fmt.Errorf("wrapped: %w", errCommit)},
	}
	modes := []scopedhttp.CommitMode{scopedhttp.Manual, scopedhttp.Autocommit, scopedhttp.AutocommitIncludeRedirect}
	for _, v := range values {
		for _, mode := range modes {
			t.Run(fmt.Sprintf("Value=%s/Mode=%v", v.name, mode), func(t *testing.T) {
				fx := newFixture()
				h := fx.middleware(scopedhttp.WithCommitMode(mode))(http.HandlerFunc(
					func(w http.ResponseWriter, r *http.Request) {
						session(t, r)
						w.Header().Set("Location", "/items/1")
						panic(v.v)
					}))
				rec := httptest.NewRecorder()
				p, commits, rollbacks := recovered(fx, h, rec)
				if p != v.v {
					t.Errorf("recovered %#v, want the handler's own panic value %#v", p, v.v)
				}
				if commits != 0 || rollbacks != 1 {
					t.Errorf("when the panic reached the recoverer: %d commit(s), %d rollback(s); want the rollback done", commits, rollbacks)
				}
				if rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Flushed {
					t.Errorf("the middleware wrote a response (%d %q) for a panicking handler", rec.Code, rec.Body.String())
				}
				fx.wantEnded(t, "after the panic", 0, 1)
			})
		}
	}
}

// A panic after the handler set its status and wrote part of its body,
// still held: the commit point (the return) never came, so the scope is
// rolled back and nothing of the response reaches the server's writer.
func TestPanicAfterWritingRollsBackAndSendsNothing(t *testing.T) {
	fx := newFixture()
	h := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			session(t, r)
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte("created"))
			panic("late")
		}))
	spy := newSpy()
	p, commits, rollbacks := recovered(fx, h, spy)
	if p != "late" || commits != 0 || rollbacks != 1 {
		t.Errorf("recovered %v with %d commit(s), %d rollback(s); want \"late\" after 1 rollback", p, commits, rollbacks)
	}
	if spy.code != 0 || len(spy.body) != 0 {
		t.Errorf("the server got %d %q from a handler that panicked", spy.code, spy.body)
	}
}

func TestPanicInManualModeAfterHandlerCommitKeepsTheCommit(t *testing.T) {
	fx := newFixture()
	h := fx.middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		session(t, r)
		if err := fx.reg.Commit(r.Context()); err != nil {
			t.Errorf("commit: %v", err)
		}
		panic("after commit")
	}))
	if p, commits, rollbacks := recovered(fx, h, httptest.NewRecorder()); p != "after commit" || commits != 1 || rollbacks != 0 {
		t.Errorf("recovered %v with %d commit(s), %d rollback(s); want 1 commit", p, commits, rollbacks)
	}
}

// On a real server the panic reaches net/http, which aborts the response;
// the scope was rolled back first.
func TestPanicOnRealServerRollsBackAndAbortsResponse(t *testing.T) {
	for _, v := range []any{http.ErrAbortHandler, "boom"} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			fx := newFixture()
			h, returned := returnedSignal(fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(
				func(w http.ResponseWriter, r *http.Request) {
					session(t, r)
					w.Header().Set("Location", "/items/1")
					panic(v)
				})))
			ts := serve(t, h)
			res := do(context.Background(), ts, http.MethodPost, "/items")
			testkit.WaitFor(t, returned, "the handler to panic")
			if res.err == nil {
				t.Errorf("client got a response (%d) from a panicking handler", res.status)
			}
			fx.wantEnded(t, "panic", 0, 1)
		})
	}
}

// runtime.Goexit (t.FailNow in a handler, say) ends the handler without a
// return or a panic: the scope is rolled back all the same.
func TestGoexitInHandlerRollsBack(t *testing.T) {
	fx := newFixture()
	h := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(
		func(_ http.ResponseWriter, r *http.Request) {
			session(t, r)
			runtime.Goexit()
		}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	}()
	testkit.WaitFor(t, done, "the handler goroutine to exit")
	fx.wantEnded(t, "Goexit", 0, 1)
}
