package scopedhttp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

func TestRequestThatNeverAsksForSessionCallsNoFactory(t *testing.T) {
	modes := []scopedhttp.CommitMode{scopedhttp.Manual, scopedhttp.Autocommit, scopedhttp.AutocommitIncludeRedirect}
	for _, mode := range modes {
		for _, status := range []int{0, 200, 302, 500} {
			t.Run(fmt.Sprintf("Mode=%v/Status=%d", mode, status), func(t *testing.T) {
				fx := newFixture()
				h := fx.middleware(scopedhttp.WithCommitMode(mode))(http.HandlerFunc(
					func(w http.ResponseWriter, r *http.Request) {
						scope, ok := scoped.FromContext(r.Context())
						if !ok || scope.Len() != 0 {
							t.Errorf("request has scope %v (ok %v), want an empty one", scope, ok)
						}
						if status != 0 {
							w.WriteHeader(status)
							_, _ = w.Write([]byte("no database"))
						}
					}))
				h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
				if n := fx.created(); n != 0 {
					t.Errorf("factory ran %d times for a request that never asked", n)
				}
				if errs := fx.errs(); len(errs) != 0 {
					t.Errorf("teardown errors: %v", errs)
				}
			})
		}
	}
}

func TestOneSessionPerRequestAndANewOneForTheNext(t *testing.T) {
	fx := newFixture()
	type ctxKey struct{}
	seen := make(chan *fakeTx, 3)
	h, _ := returnedSignal(fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			a := session(t, r)
			b, err := fx.reg.Current(r.Context())
			if err != nil {
				t.Errorf("ScopedSession.Current: %v", err)
			}
			// Deeper code, with more context layers, gets the same one.
			deeper := r.WithContext(context.WithValue(r.Context(), ctxKey{}, "layer"))
			c := session(t, deeper)
			if a == nil || a != b || a != c {
				t.Errorf("one request got sessions %p, %p, %p", a, b, c)
			}
			seen <- a
			w.WriteHeader(http.StatusOK)
		})))
	ts := serve(t, h)

	got := map[*fakeTx]bool{}
	for i := range 3 {
		if res := do(context.Background(), ts, http.MethodGet, "/"); res.err != nil || res.status != http.StatusOK {
			t.Fatalf("request %d: %d, %v", i, res.status, res.err)
		}
		got[testkit.WaitFor(t, seen, "the handler's session")] = true
	}
	if len(got) != 3 || fx.created() != 3 {
		t.Errorf("3 requests got %d distinct sessions from %d factory calls, want 3 and 3", len(got), fx.created())
	}
	for _, tx := range fx.sessions() {
		if tx.commits.Load() != 1 || tx.rollbacks.Load() != 0 {
			t.Errorf("session %d: %d commit(s), %d rollback(s); want each committed once", tx.id, tx.commits.Load(), tx.rollbacks.Load())
		}
	}
}

// Concurrent requests, all holding their session at the same time, never
// see each other's.
func TestConcurrentRequestsNeverShareASession(t *testing.T) {
	const n = 32
	fx := newFixture()
	var holding atomic.Int32
	allHolding := make(chan struct{})
	var mu sync.Mutex
	owner := map[*fakeTx]string{}
	h := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			tx := session(t, r)
			mu.Lock()
			if prev, dup := owner[tx]; dup {
				t.Errorf("%s got the session of %s", r.URL.Path, prev)
			}
			owner[tx] = r.URL.Path
			mu.Unlock()
			if holding.Add(1) == n {
				close(allHolding)
			}
			select {
			case <-allHolding:
			case <-time.After(bound):
				t.Errorf("not all %d requests arrived together", n)
			}
			if again := session(t, r); again != tx {
				t.Errorf("%s: session changed while other requests ran", r.URL.Path)
			}
			w.WriteHeader(http.StatusOK)
		}))
	ts := serve(t, h)

	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := do(context.Background(), ts, http.MethodGet, fmt.Sprintf("/r%d", i)); res.err != nil || res.status != http.StatusOK {
				t.Errorf("request %d: %d, %v", i, res.status, res.err)
			}
		}()
	}
	wg.Wait()
	if fx.created() != n {
		t.Errorf("%d requests created %d sessions", n, fx.created())
	}
	fx.wantEnded(t, "every request", n, 0)
}

// The commit happens when the handler returns, so a handler may set its
// status, write, and then still use its session (more statements after
// the first write): what it does is committed with the rest, or rolled
// back with it, by the status.
func TestSessionAfterFirstWriteIsDecidedWithTheResponse(t *testing.T) {
	for _, mode := range []scopedhttp.CommitMode{scopedhttp.Autocommit, scopedhttp.AutocommitIncludeRedirect} {
		for _, status := range []int{200, 500} {
			for _, askedBefore := range []bool{false, true} {
				t.Run(fmt.Sprintf("Mode=%v/Status=%d/AskedBefore=%v", mode, status, askedBefore), func(t *testing.T) {
					fx := newFixture()
					var first *fakeTx
					h := fx.middleware(scopedhttp.WithCommitMode(mode))(http.HandlerFunc(
						func(w http.ResponseWriter, r *http.Request) {
							if askedBefore {
								first = session(t, r)
							}
							w.WriteHeader(status)
							_, _ = w.Write([]byte("first chunk"))
							tx, err := scoped.Current[*fakeTx](r.Context())
							if err != nil {
								t.Errorf("scoped.Current after the first write: %v", err)
							}
							if askedBefore && tx != first {
								t.Errorf("the session changed after the first write")
							}
							if !fx.reg.Has(r.Context()) {
								t.Errorf("Has after the first write: false")
							}
							fx.wantEnded(t, "while the handler runs", 0, 0)
							_, _ = w.Write([]byte(", second chunk"))
						}))
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stream", nil))
					if rec.Code != status || rec.Body.String() != "first chunk, second chunk" {
						t.Errorf("client got %d %q", rec.Code, rec.Body.String())
					}
					if n := fx.created(); n != 1 {
						t.Errorf("factory ran %d times, want 1", n)
					}
					if status == 200 {
						fx.wantEnded(t, "200", 1, 0)
					} else {
						fx.wantEnded(t, "500", 0, 1)
					}
				})
			}
		}
	}
}

// After the handler committed its scope by hand (the server-sent-events
// pattern), the scope has ended: a session asked for while streaming is
// ErrScopeClosed, never one that no one would commit.
func TestSessionAfterHandCommitIsErrScopeClosed(t *testing.T) {
	fx := newFixture()
	h := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			session(t, r)
			scope, _ := scoped.FromContext(r.Context())
			if err := scope.Commit(); err != nil {
				t.Errorf("commit: %v", err)
			}
			w.(http.Flusher).Flush()
			if _, err := scoped.Current[*fakeTx](r.Context()); !errors.Is(err, scoped.ErrScopeClosed) {
				t.Errorf("scoped.Current after the hand commit: %v, want ErrScopeClosed", err)
			}
			if fx.reg.Has(r.Context()) {
				t.Errorf("Has after the hand commit")
			}
			_, _ = w.Write([]byte("data: 1\n\n"))
		}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/events", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "data: 1\n\n" || !rec.Flushed {
		t.Errorf("client got %d %q (flushed %v)", rec.Code, rec.Body.String(), rec.Flushed)
	}
	if n := fx.created(); n != 1 {
		t.Errorf("factory ran %d times, want 1", n)
	}
	fx.wantEnded(t, "hand commit", 1, 0)
}

// In Manual mode the scope is the handler's until it returns: a session
// asked for while streaming is committed only if the handler commits it.
func TestSessionAfterCommitPointInManualModeIsTheHandlers(t *testing.T) {
	for _, commit := range []bool{false, true} {
		t.Run(fmt.Sprintf("HandlerCommits=%v", commit), func(t *testing.T) {
			fx := newFixture()
			h := fx.middleware()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte("first chunk"))
				session(t, r)
				if commit {
					if err := fx.reg.Commit(r.Context()); err != nil {
						t.Errorf("commit: %v", err)
					}
				}
			}))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/stream", nil))
			if commit {
				fx.wantEnded(t, "committed by the handler", 1, 0)
			} else {
				fx.wantEnded(t, "not committed", 0, 1)
			}
		})
	}
}

// Errors of ending a session after the response was decided reach the
// ScopedSession's teardown error hook; the response is not affected.
func TestTeardownErrorsReachTheHook(t *testing.T) {
	cases := []struct {
		name   string
		mode   scopedhttp.CommitMode
		status int
		panics bool
	}{
		{"Manual/RollbackAtReturn", scopedhttp.Manual, http.StatusOK, false},
		{"Autocommit/RollbackOn404", scopedhttp.Autocommit, http.StatusNotFound, false},
		{"Autocommit/RollbackOnPanic", scopedhttp.Autocommit, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fx := newFixture()
			fx.rollbackErr = errRollback
			h := fx.middleware(scopedhttp.WithCommitMode(c.mode))(http.HandlerFunc(
				func(w http.ResponseWriter, r *http.Request) {
					session(t, r)
					if c.panics {
						panic(http.ErrAbortHandler)
					}
					w.WriteHeader(c.status)
					_, _ = w.Write([]byte("body"))
				}))
			rec := httptest.NewRecorder()
			func() {
				defer func() { _ = recover() }()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			}()
			if !c.panics && (rec.Code != c.status || rec.Body.String() != "body") {
				t.Errorf("response changed by a failing rollback: %d %q", rec.Code, rec.Body.String())
			}
			errs := fx.errs()
			if len(errs) != 1 || !errors.Is(errs[0], errRollback) {
				t.Errorf("hook got %v, want the rollback error once", errs)
			}
			fx.wantEnded(t, c.name, 0, 1)
		})
	}
}

func TestWithoutBindScopedCurrentIsErrNotBoundButSessionsStillScoped(t *testing.T) {
	fx := newFixture()
	h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			if _, err := scoped.Current[*fakeTx](r.Context()); !errors.Is(err, scoped.ErrNotBound) {
				t.Errorf("scoped.Current without Bind: %v, want ErrNotBound", err)
			}
			if _, err := fx.reg.Current(r.Context()); err != nil {
				t.Errorf("ScopedSession.Current: %v", err)
			}
			w.WriteHeader(http.StatusCreated)
		}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", nil))
	fx.wantEnded(t, "201", 1, 0)
}

// otherTx is a second session type, bound next to fakeTx.
type otherTx struct{ commits, rollbacks atomic.Int32 }

func (o *otherTx) Commit() error   { o.commits.Add(1); return nil }
func (o *otherTx) Rollback() error { o.rollbacks.Add(1); return nil }

func TestBindSeveralSessionTypesCommitsThemAll(t *testing.T) {
	fx := newFixture()
	other := &otherTx{}
	otherReg := scoped.New(func(context.Context) (*otherTx, error) { return other, nil })
	h := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(otherReg))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			session(t, r)
			if o, err := scoped.Current[*otherTx](r.Context()); err != nil || o != other {
				t.Errorf("scoped.Current[*otherTx]: %p, %v", o, err)
			}
			w.WriteHeader(http.StatusOK)
		}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", nil))
	fx.wantEnded(t, "fakeTx", 1, 0)
	if other.commits.Load() != 1 || other.rollbacks.Load() != 0 {
		t.Errorf("otherTx: %d commit(s), %d rollback(s); want 1, 0", other.commits.Load(), other.rollbacks.Load())
	}
}
