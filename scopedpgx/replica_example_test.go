package scopedpgx_test

import (
	"context"
	"fmt"
	"log"
	"net/http"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// GET and HEAD requests read from a replica; every other request runs on
// the primary. A client reads its own writes: the position of what its
// requests committed travels in a cookie, and a GET that carries it runs
// on the replica only if the replica has replayed it.
func ExampleWithReplicas() {
	ctx := context.Background()
	primary, err := pgxpool.New(ctx, "postgres://app@db-primary:5432/app")
	if err != nil {
		log.Fatal(err)
	}
	defer primary.Close()
	// connect_timeout bounds how long a replica that does not answer holds a unit.
	replica, err := pgxpool.New(ctx, "postgres://app@db-replica:5432/app?connect_timeout=2")
	if err != nil {
		log.Fatal(err)
	}
	defer replica.Close()
	txs := scoped.New(scopedpgx.Tx(primary, pgx.TxOptions{}, scopedpgx.WithReplicas(replica)),
		scoped.WithRollback(scopedpgx.Rollback))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /notes/{id}", func(w http.ResponseWriter, r *http.Request) {
		tx, err := scoped.Current[pgx.Tx](r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var body string
		if err := tx.QueryRow(r.Context(), "SELECT body FROM notes WHERE id = $1", r.PathValue("id")).Scan(&body); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		fmt.Fprintln(w, body)
	})
	mux.HandleFunc("PUT /notes/{id}", func(w http.ResponseWriter, r *http.Request) {
		tx, err := scoped.Current[pgx.Tx](r.Context())
		if err == nil {
			_, err = tx.Exec(r.Context(), "UPDATE notes SET body = $2 WHERE id = $1", r.PathValue("id"), r.FormValue("body"))
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent) // committed, and the cookie set, before this leaves
	})
	mw := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))
	handler := scopedpgx.ReadYourWrites("db_position")(scopedhttp.ReadOnlySafeMethods(mw(mux)))
	log.Fatal(http.ListenAndServe(":8080", handler))
}
