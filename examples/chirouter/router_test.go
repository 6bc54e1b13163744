package chirouter_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

// bound is how long a test waits for something that must happen before it
// fails instead of hanging: the shared test kit's.
const bound = testkit.Bound

// countingTx is a database/sql-style session that counts how it ended.
type countingTx struct{ commits, rollbacks *atomic.Int32 }

func (t countingTx) Commit() error   { t.commits.Add(1); return nil }
func (t countingTx) Rollback() error { t.rollbacks.Add(1); return nil }

// fixture is a ScopedSession of countingTx and the totals of its sessions.
type fixture struct {
	txs                         *scoped.ScopedSession[countingTx]
	created, commits, rollbacks atomic.Int32
}

func newFixture() *fixture {
	fx := &fixture{}
	fx.txs = scoped.New(func(context.Context) (countingTx, error) {
		fx.created.Add(1)
		return countingTx{&fx.commits, &fx.rollbacks}, nil
	})
	return fx
}

func (fx *fixture) middleware() func(http.Handler) http.Handler {
	return scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(fx.txs))
}

// itemHandler answers 201 with the item id chi extracted, or 404 for id
// "missing"; it uses the session either way. It runs on a server
// goroutine, so it reports with Errorf.
func itemHandler(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := scoped.Current[countingTx](r.Context()); err != nil {
			t.Errorf("scoped.Current in handler: %v", err)
		}
		id := chi.URLParam(r, "id")
		if id == "missing" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = fmt.Fprintf(w, "item %s", id)
	}
}

// returnedSignal wraps h so that the returned channel is closed once h's
// ServeHTTP has returned: everything the middleware does at the end of a
// request has happened by then.
func returnedSignal(h http.Handler) (http.Handler, <-chan struct{}) {
	done := make(chan struct{})
	var once sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer once.Do(func() { close(done) })
		h.ServeHTTP(w, r)
	}), done
}

type routerCase struct {
	path       string
	wantStatus int
	wantBody   string
	wantC      int32
	wantR      int32
}

var routerCases = []routerCase{
	{"/items/42", http.StatusCreated, "item 42", 1, 0},
	{"/items/missing", http.StatusNotFound, "404 page not found\n", 0, 1},
}

// checkRouter sends c's request to h on a real server and checks the
// response and how the request's one session ended.
func checkRouter(t *testing.T, fx *fixture, h http.Handler, c routerCase) {
	t.Helper()
	h, returned := returnedSignal(h)
	ts := httptest.NewServer(h)
	defer ts.Close()

	resp, err := ts.Client().Get(ts.URL + c.path)
	if err != nil {
		t.Fatalf("GET %s: %v", c.path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	select {
	case <-returned:
	case <-time.After(bound):
		t.Fatalf("GET %s: the handler did not return within %v", c.path, bound)
	}
	if err != nil || resp.StatusCode != c.wantStatus || string(body) != c.wantBody {
		t.Errorf("GET %s: %d %q, %v; want %d %q", c.path, resp.StatusCode, body, err, c.wantStatus, c.wantBody)
	}
	if n, cm, rb := fx.created.Load(), fx.commits.Load(), fx.rollbacks.Load(); n != 1 || cm != c.wantC || rb != c.wantR {
		t.Errorf("GET %s: %d session(s), %d commit(s), %d rollback(s); want 1, %d, %d", c.path, n, cm, rb, c.wantC, c.wantR)
	}
}

func TestWorksUnderChi(t *testing.T) {
	layouts := map[string]func(fx *fixture) http.Handler{
		// The middleware for every route of the router.
		"Use": func(fx *fixture) http.Handler {
			r := chi.NewRouter()
			r.Use(fx.middleware())
			r.Get("/items/{id}", itemHandler(t))
			return r
		},
		// The middleware for one route: chi's URL parameters survive the
		// middleware's new request.
		"With": func(fx *fixture) http.Handler {
			r := chi.NewRouter()
			r.With(fx.middleware()).Get("/items/{id}", itemHandler(t))
			return r
		},
	}
	for name, layout := range layouts {
		for _, c := range routerCases {
			t.Run(name+c.path, func(t *testing.T) {
				fx := newFixture()
				checkRouter(t, fx, layout(fx), c)
			})
		}
	}
}
