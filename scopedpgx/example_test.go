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

// One transaction per HTTP request, committed by the middleware when the
// handler answers 2xx, rolled back otherwise.
func ExampleNewTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@localhost:5432/app")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	txs := scopedpgx.NewTx(pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})

	mux := http.NewServeMux()
	mux.HandleFunc("POST /users/{id}/visits", func(w http.ResponseWriter, r *http.Request) {
		tx, err := scoped.Current[pgx.Tx](r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var visits int
		err = tx.QueryRow(r.Context(),
			"UPDATE users SET visits = visits + 1 WHERE id = $1 RETURNING visits", r.PathValue("id")).Scan(&visits)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound) // rolled back
			return
		}
		fmt.Fprintln(w, visits) // committed before this reaches the client
	})
	mw := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))
	log.Fatal(http.ListenAndServe(":8080", mw(mux)))
}

// A connection pinned to a job, with session settings that last for the
// job and are reset before the connection serves anyone else.
func ExampleNewConn() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@localhost:5432/app")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	conns := scopedpgx.NewConn(pool)

	job := func(ctx context.Context, tenant string) error {
		ctx, scope := scoped.BeginWithoutSafetyNet(ctx)
		defer scope.Remove() // DISCARD ALL, then back to the pool
		c, err := conns.Current(ctx)
		if err != nil {
			return err
		}
		if _, err := c.Exec(ctx, "SELECT set_config('app.tenant', $1, false)", tenant); err != nil {
			return err
		}
		// ... queries under the tenant's row-level security policies ...
		return nil
	}
	if err := job(ctx, "acme"); err != nil {
		log.Fatal(err)
	}
}

// Scopes that never ask for their transaction take no connection: nothing
// here reaches a server, so none needs to exist.
func ExampleNewTx_lazy() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://nobody@127.0.0.1:1/none") // connects lazily
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	txs := scopedpgx.NewTx(pool, pgx.TxOptions{})

	for range 3 {
		_, scope := scoped.BeginWithoutSafetyNet(ctx)
		// ... a request that only reads a cache ...
		if err := scope.Commit(); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("connections:", pool.Stat().TotalConns())
	fmt.Println("transactions:", txs.Stats().Created)
	// Output:
	// connections: 0
	// transactions: 0
}
