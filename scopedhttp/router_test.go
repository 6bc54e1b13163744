package scopedhttp_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

// itemHandler answers 201 with the item id its router extracted, or 404
// for id "missing"; it uses the session either way.
func itemHandler(t *testing.T, id func(*http.Request) string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		session(t, r)
		if id(r) == "missing" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = fmt.Fprintf(w, "item %s", id(r))
	}
}

type routerCase struct {
	path       string
	wantStatus int
	wantBody   string
	wantC      int
	wantR      int
}

var routerCases = []routerCase{
	{"/items/42", http.StatusCreated, "item 42", 1, 0},
	{"/items/missing", http.StatusNotFound, "404 page not found\n", 0, 1},
}

func checkRouter(t *testing.T, fx *fixture, h http.Handler, c routerCase) {
	t.Helper()
	h, returned := returnedSignal(h)
	ts := serve(t, h)
	res := do(context.Background(), ts, http.MethodGet, c.path)
	testkit.WaitFor(t, returned, "the handler to return")
	if res.err != nil || res.status != c.wantStatus || res.body != c.wantBody {
		t.Errorf("GET %s: %d %q, %v; want %d %q", c.path, res.status, res.body, res.err, c.wantStatus, c.wantBody)
	}
	fx.wantEnded(t, c.path, c.wantC, c.wantR)
}

func TestWorksUnderServeMux(t *testing.T) {
	pathValue := func(r *http.Request) string { return r.PathValue("id") }
	layouts := map[string]func(fx *fixture) http.Handler{
		// The middleware around the whole mux.
		"AroundMux": func(fx *fixture) http.Handler {
			mux := http.NewServeMux()
			mux.Handle("GET /items/{id}", itemHandler(t, pathValue))
			return fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(mux)
		},
		// The middleware around one route: the path values the mux set
		// survive the middleware's new request.
		"AroundRoute": func(fx *fixture) http.Handler {
			mux := http.NewServeMux()
			mw := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))
			mux.Handle("GET /items/{id}", mw(itemHandler(t, pathValue)))
			return mux
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
