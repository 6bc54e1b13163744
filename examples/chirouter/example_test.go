package chirouter_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/go-chi/chi/v5"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
)

// printTx is a database/sql-style session that prints how it ends.
type printTx struct{}

func (printTx) Commit() error   { fmt.Println("  commit"); return nil }
func (printTx) Rollback() error { fmt.Println("  rollback"); return nil }

// The middleware in r.Use: every chi route runs in its own scope, and in
// Autocommit mode a 2xx commits before the status line leaves while a 404
// rolls back.
func Example() {
	txs := scoped.New(func(context.Context) (printTx, error) { return printTx{}, nil })

	r := chi.NewRouter()
	r.Use(scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs)))
	r.Put("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		if _, err := scoped.Current[printTx](r.Context()); err != nil {
			http.Error(w, "no transaction", http.StatusServiceUnavailable)
			return
		}
		if chi.URLParam(r, "id") == "missing" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})

	for _, path := range []string{"/items/42", "/items/missing"} {
		fmt.Println("PUT", path)
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, path, nil))
		fmt.Println(" ", rec.Code)
	}
	// Output:
	// PUT /items/42
	//   commit
	//   201
	// PUT /items/missing
	//   rollback
	//   404
}
