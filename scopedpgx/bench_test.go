package scopedpgx

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The per-request cost of scopedhttp (Autocommit) with a NewTx transaction
// against a hand-written pgx handler that begins and commits itself, on
// the same endpoint: read one row, update it, answer 200. Both run on the
// real server through ServeHTTP, so the database round trips (BEGIN,
// SELECT, UPDATE, COMMIT) dominate and the difference is the library's.
//
//	SCOPED_TEST_POSTGRES_DSN=... go test -run '^$' -bench . -benchmem ./scopedpgx
func BenchmarkBumpEndpoint(b *testing.B) {
	const rows = 256
	// Without waiting for the WAL flush at COMMIT, the server's share of a
	// request is smaller and steadier, and the libraries' easier to see.
	pool := newPool(b, 16, "synchronous_commit", "off")
	table := newTable(b, pool, "pgx_bench")
	if _, err := pool.Exec(context.Background(),
		"INSERT INTO "+table+" (id) SELECT generate_series(0, $1)", rows-1); err != nil {
		b.Fatal(err)
	}
	r := NewTx(pool, pgx.TxOptions{})
	impls := []struct {
		name string
		h    http.Handler
	}{
		{"scopedpgx", scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
			scopedhttp.Bind(r))(bumpScoped(table))},
		{"hand", bumpByHand(pool, table)},
	}
	for _, impl := range impls {
		for _, parallel := range []bool{false, true} {
			b.Run(fmt.Sprintf("Impl=%s/Parallel=%v", impl.name, parallel), func(b *testing.B) {
				var next atomic.Int64 // spreads parallel workers over rows, to measure the library, not row locks
				serve := func(pb interface{ Next() bool }) {
					id := strconv.Itoa(int(next.Add(1) % rows))
					req := httptest.NewRequest(http.MethodPost, "/bump?id="+id, nil)
					w := &discardWriter{header: http.Header{}}
					for pb.Next() {
						w.code = 0
						impl.h.ServeHTTP(w, req)
						if w.code != http.StatusOK {
							b.Errorf("status %d", w.code)
							return
						}
					}
				}
				b.ReportAllocs()
				if parallel {
					b.RunParallel(func(pb *testing.PB) { serve(pb) })
				} else {
					serve(loopFunc(b.Loop))
				}
			})
		}
	}
	b.StopTimer()
	if n := pool.Stat().AcquiredConns(); n != 0 {
		b.Errorf("%d connections still acquired", n)
	}
}

// loopFunc adapts b.Loop to the Next of *testing.PB.
type loopFunc func() bool

func (f loopFunc) Next() bool { return f() }

// bumpScoped is the endpoint written for scopedhttp: the transaction is
// the request's, begun on first use and committed by the middleware.
func bumpScoped(table string) http.Handler {
	sel, upd := bumpSQL(table)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx := req.Context()
		tx, err := scoped.Current[pgx.Tx](ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		bump(ctx, w, tx, req.URL.Query().Get("id"), sel, upd)
	})
}

// bumpByHand is the same endpoint as people write it without the library.
func bumpByHand(pool *pgxpool.Pool, table string) http.Handler {
	sel, upd := bumpSQL(table)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx := req.Context()
		tx, err := pool.BeginTx(ctx, pgx.TxOptions{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer tx.Rollback(ctx)
		cw := &commitWriter{ResponseWriter: w, commit: func() error { return tx.Commit(ctx) }}
		bump(ctx, cw, tx, req.URL.Query().Get("id"), sel, upd)
	})
}

func bumpSQL(table string) (sel, upd string) {
	return "SELECT n FROM " + table + " WHERE id = $1", "UPDATE " + table + " SET n = $2 WHERE id = $1"
}

func bump(ctx context.Context, w http.ResponseWriter, tx pgx.Tx, id, sel, upd string) {
	var n int
	if err := tx.QueryRow(ctx, sel, id).Scan(&n); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if _, err := tx.Exec(ctx, upd, id, n+1); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// commitWriter commits before a 2xx status leaves, as a careful hand-written
// handler does (the same guarantee the middleware gives).
type commitWriter struct {
	http.ResponseWriter
	commit func() error
}

func (w *commitWriter) WriteHeader(code int) {
	if code >= 200 && code < 300 {
		if err := w.commit(); err != nil {
			code = http.StatusInternalServerError
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// discardWriter is the cheapest ResponseWriter, so that the benchmark
// measures the handlers.
type discardWriter struct {
	header http.Header
	code   int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(p), nil
}
func (w *discardWriter) WriteHeader(code int) { w.code = code }
