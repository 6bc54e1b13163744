package scopedhttp_test

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// GET and HEAD run read-only units: their writes fail; a POST writes.
func TestReadOnlySafeMethodsMakesGetUnitsReadOnly(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		db := openDB(t, s)
		table := dbtest.CreateIDTable(t, db, "http_ro")
		txs := scopedsql.NewTx(db, nil)
		var id int64
		mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tx, err := txs.Current(r.Context())
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			id++
			if _, err := tx.ExecContext(r.Context(), s.InsertID(table), id); err != nil {
				w.WriteHeader(http.StatusConflict)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
		h := scopedhttp.ReadOnlySafeMethods(scopedhttp.Middleware(
			scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(mux))
		for _, c := range []struct {
			method string
			want   int
		}{{http.MethodGet, http.StatusConflict}, {http.MethodHead, http.StatusConflict}, {http.MethodPost, http.StatusNoContent}} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(c.method, "/", nil).WithContext(dbtest.Ctx(t)))
			if rec.Code != c.want {
				t.Errorf("%s: status %d, want %d", c.method, rec.Code, c.want)
			}
		}
		if got := dbtest.IDs(t, db, table); len(got) != 1 || got[0] != 3 {
			t.Errorf("committed %v, want only the POST's [3]", got)
		}
	})
}

// Inside Middleware it could reach no transaction: it panics, not a
// silent no-op.
func TestReadOnlySafeMethodsInsideTheScopePanics(t *testing.T) {
	t.Parallel()
	h := scopedhttp.ReadOnlySafeMethods(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	ctx, scope := scoped.Begin(context.Background())
	defer scope.Remove()
	defer func() {
		if recover() == nil {
			t.Error("ReadOnlySafeMethods inside a scope did not panic")
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx))
}

// GET and HEAD requests read-only, in one line: ReadOnlySafeMethods
// wraps the middleware that begins the request's unit of work.
func ExampleReadOnlySafeMethods() {
	var db *sql.DB // sql.Open(...)
	txs := scopedsql.NewTx(db, nil)
	mux := http.NewServeMux() // the application's handlers
	handler := scopedhttp.ReadOnlySafeMethods(scopedhttp.Middleware(
		scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))(mux))
	_ = handler // http.ListenAndServe(addr, handler)
}
