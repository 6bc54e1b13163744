package scopedpgx

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/jackc/pgx/v5"
)

// app inserts the request's id into table and answers as ?do= says:
// a status code, "panic" after inserting, "none" without touching the
// database, or "manual" to commit by hand and then answer 422.
func app(r *scoped.ScopedSession[pgx.Tx], table string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx := req.Context()
		do := req.URL.Query().Get("do")
		if do == "none" {
			w.WriteHeader(http.StatusOK)
			return
		}
		id, err := strconv.Atoi(req.URL.Query().Get("id"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tx, err := scoped.Current[pgx.Tx](ctx) // found through scopedhttp.Bind
		if err == nil {
			_, err = tx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		switch do {
		case "panic":
			panic(fmt.Sprintf("handler for id %d panicked", id))
		case "manual":
			if err := r.Commit(ctx); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusUnprocessableEntity)
		case "302":
			http.Redirect(w, req, "/elsewhere", http.StatusFound)
		default:
			code, err := strconv.Atoi(do)
			if err != nil {
				code = http.StatusBadRequest
			}
			w.WriteHeader(code)
		}
	})
}

func TestHTTPCommitModes(t *testing.T) {
	pool := newPool(t, 4)
	table := newTable(t, pool, "pgx_modes")
	const (
		no  = false
		yes = true
	)
	// Whether the inserted row survives, per handler outcome and mode.
	cases := []struct {
		do                        string
		manual, auto, autoInclRed bool
	}{
		{"200", no, yes, yes},
		{"201", no, yes, yes},
		{"302", no, no, yes},
		{"422", no, no, no},
		{"503", no, no, no},
		{"panic", no, no, no},
		{"manual", yes, yes, yes},
	}
	modes := []scopedhttp.CommitMode{scopedhttp.Manual, scopedhttp.Autocommit, scopedhttp.AutocommitIncludeRedirect}
	id := 0
	for _, mode := range modes {
		r := NewTx(pool, pgx.TxOptions{})
		h := scopedhttp.Middleware(scopedhttp.WithCommitMode(mode), scopedhttp.Bind(r))(app(r, table))
		for _, tc := range cases {
			id++
			want := []bool{tc.manual, tc.auto, tc.autoInclRed}[mode]
			t.Run(fmt.Sprintf("Mode=%v/Do=%s", mode, tc.do), func(t *testing.T) {
				req := httptest.NewRequest(http.MethodPost, fmt.Sprintf("/?id=%d&do=%s", id, tc.do), nil)
				panicked := serve(h, httptest.NewRecorder(), req)
				if panicked != (tc.do == "panic") {
					t.Errorf("panic re-raised: %v", panicked)
				}
				got := slices.Contains(ids(t, pool, table), id)
				if got != want {
					t.Errorf("row committed: %v, want %v", got, want)
				}
				if n := pool.Stat().AcquiredConns(); n != 0 {
					t.Errorf("%d connections still acquired", n)
				}
			})
		}
		if st := r.Stats(); st.Live != 0 || st.Failed != 0 {
			t.Errorf("mode %v: stats %+v", mode, st)
		}
	}
}

// serve runs h and reports whether it panicked (the middleware re-raises
// a handler's panic after rolling back).
func serve(h http.Handler, w http.ResponseWriter, req *http.Request) (panicked bool) {
	defer func() { panicked = recover() != nil }()
	h.ServeHTTP(w, req)
	return false
}
