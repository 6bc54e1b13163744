// Command retry measures scopedhttp's WithRetry under contention on a real
// PostgreSQL server: goodput (requests answered 2xx per second) and
// latency percentiles, with and without WithRetry.
//
// Every request increments one of -rows counters (1 by default: all
// requests contend) at SERIALIZABLE, through a service function in its own
// unit of work with retries, as the trial did:
//
//	scoped.Run(ctx, func(ctx) error { SELECT n ...; UPDATE ... SET n = n'+1 }, scoped.WithRetry(3, scopedsql.Retryable))
//
// and the handler answers its error with 500. -clients goroutines each send
// their next POST when the last was answered, for -duration per variant,
// over loopback HTTP/1.1 with keep-alive. Variants: "none" (the middleware
// without WithRetry: the nested unit's conflict reaches the client) and
// "retry" (WithRetry(-attempts, scopedsql.Retryable)). At the end the
// counters must equal the number of 2xx answers.
//
//	flock /tmp/bench.lock go run ./retry -dsn 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	_ "github.com/lib/pq"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

func main() {
	dsn := flag.String("dsn", os.Getenv("SCOPED_TEST_POSTGRES_DSN"), "PostgreSQL DSN (lib/pq)")
	clients := flag.Int("clients", 32, "concurrent clients")
	rows := flag.Int("rows", 1, "counters the requests choose among (1: all contend)")
	duration := flag.Duration("duration", 10*time.Second, "measuring time per variant")
	attempts := flag.Int("attempts", 10, "WithRetry's maxAttempts in the retry variant")
	flag.Parse()
	if *dsn == "" {
		log.Fatal("retry: -dsn or SCOPED_TEST_POSTGRES_DSN is required")
	}
	db, err := sql.Open("postgres", *dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(*clients + 4)
	db.SetMaxIdleConns(*clients + 4)
	table := fmt.Sprintf("bench_retry_%d", os.Getpid())
	if _, err := db.Exec("CREATE TABLE " + table + " (id INT PRIMARY KEY, n BIGINT NOT NULL DEFAULT 0)"); err != nil {
		log.Fatal(err)
	}
	defer func() { _, _ = db.Exec("DROP TABLE " + table) }()

	fmt.Printf("clients=%d rows=%d duration=%v attempts=%d GOMAXPROCS=%d\n", *clients, *rows, *duration, *attempts, runtimeProcs())
	fmt.Printf("%-6s %9s %9s %9s %12s %9s %9s %9s\n", "mode", "requests", "2xx", "non-2xx", "goodput/s", "p50", "p99", "p99(2xx)")
	for _, mode := range []string{"none", "retry", "none", "retry"} {
		if _, err := db.Exec("TRUNCATE " + table); err != nil {
			log.Fatal(err)
		}
		for id := 1; id <= *rows; id++ {
			if _, err := db.Exec("INSERT INTO "+table+" (id) VALUES ($1)", id); err != nil {
				log.Fatal(err)
			}
		}
		r := run(db, table, mode, *clients, *rows, *attempts, *duration)
		var sum int64
		if err := db.QueryRow("SELECT coalesce(sum(n), 0) FROM " + table).Scan(&sum); err != nil {
			log.Fatal(err)
		}
		if sum != int64(len(r.ok)) {
			log.Fatalf("%s: counters sum to %d, %d requests answered 2xx", mode, sum, len(r.ok))
		}
		all := append(slices.Clone(r.ok), r.failed...)
		fmt.Printf("%-6s %9d %9d %9d %12.1f %9v %9v %9v\n", mode, len(all), len(r.ok), len(r.failed),
			float64(len(r.ok))/duration.Seconds(), pct(all, 50), pct(all, 99), pct(r.ok, 99))
	}
}

type result struct{ ok, failed []time.Duration }

func run(db *sql.DB, table, mode string, clients, rows, attempts int, d time.Duration) result {
	txs := scoped.New(scopedsql.Tx(db, &sql.TxOptions{Isolation: sql.LevelSerializable}), scoped.WithTeardownErrorHook(nil))
	increment := func(ctx context.Context, id int) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			var n int64
			if err := tx.QueryRowContext(ctx, "SELECT n FROM "+table+" WHERE id = $1", id).Scan(&n); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, "UPDATE "+table+" SET n = $2 WHERE id = $1", id, n+1)
			return err
		}, scoped.WithRetry(3, scopedsql.Retryable))
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := strconv.Atoi(r.URL.Query().Get("id"))
		if err := increment(r.Context(), id); err != nil {
			http.Error(w, "not saved", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	opts := []scopedhttp.Option{scopedhttp.Bind(txs), scopedhttp.WithCommitMode(scopedhttp.Autocommit)}
	if mode == "retry" {
		opts = append(opts, scopedhttp.WithRetry(attempts, scopedsql.Retryable))
	} else {
		opts = append(opts, scopedhttp.WithUncommittedHook(nil))
	}
	srv := httptest.NewServer(scopedhttp.Middleware(opts...)(h))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()

	var mu sync.Mutex
	var res result
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ok, failed []time.Duration
			for time.Now().Before(stop) {
				url := srv.URL + "/?id=" + strconv.Itoa(1+rand.IntN(rows))
				start := time.Now()
				resp, err := client.Post(url, "text/plain", nil)
				if err != nil {
					log.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if lat := time.Since(start); resp.StatusCode/100 == 2 {
					ok = append(ok, lat)
				} else {
					failed = append(failed, lat)
				}
			}
			mu.Lock()
			res.ok = append(res.ok, ok...)
			res.failed = append(res.failed, failed...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return res
}

// pct returns the p-th percentile of ds, rounded to 0.1 ms.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)].Round(100 * time.Microsecond)
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
