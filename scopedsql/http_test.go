package scopedsql_test

import (
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// How each request of the load test ends, chosen by id % len(outcomes).
var outcomes = []struct {
	name    string
	inserts bool
	status  int // what the client must see
	end     func(w http.ResponseWriter)
}{
	{"created", true, http.StatusCreated, func(w http.ResponseWriter) { w.WriteHeader(http.StatusCreated) }},
	{"unprocessable", true, http.StatusUnprocessableEntity, func(w http.ResponseWriter) { w.WriteHeader(http.StatusUnprocessableEntity) }},
	{"unavailable", true, http.StatusServiceUnavailable, func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) }},
	{"redirect", true, http.StatusFound, func(w http.ResponseWriter) {
		w.Header().Set("Location", "/elsewhere")
		w.WriteHeader(http.StatusFound)
	}},
	{"panic", true, http.StatusInternalServerError, func(http.ResponseWriter) { panic("handler failed") }},
	{"no database", false, http.StatusOK, func(w http.ResponseWriter) { _, _ = io.WriteString(w, "ok") }},
}

// recoverer answers 500 to a panic that the scopedhttp middleware has
// rolled back and re-raised, as a recovery middleware would.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				w.WriteHeader(http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// Through scopedhttp in Autocommit mode, 600 requests, 32 in flight, on a
// pool of 8 connections: exactly the requests answered 2xx that inserted
// have their row, no connection stays in use, and no PostgreSQL session is
// left idle in a transaction.
func TestAutocommitUnderLoadKeepsExactlyThe2xxRequests(t *testing.T) {
	t.Parallel()
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		t.Parallel()
		const requests, inFlight, poolSize = 600, 32, 8
		appName := dbtest.Table("scopedsql_load") // names our PostgreSQL sessions
		dsn := s.DSN
		if s.Name == "postgres" {
			dsn += sep(dsn) + "application_name=" + appName
		}
		db := openDB(t, dbtest.Server{Name: s.Name, Driver: s.Driver, DSN: dsn})
		db.SetMaxOpenConns(poolSize)
		table := dbtest.CreateIDTable(t, db, "scopedsql_load")
		var log errorLog
		txs := scoped.New(scopedsql.Tx(db, nil), log.option())

		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := strconv.ParseInt(r.URL.Query().Get("id"), 10, 64)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			o := outcomes[id%int64(len(outcomes))]
			if o.inserts {
				tx, err := scoped.Current[*sql.Tx](r.Context())
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				if _, err := tx.ExecContext(r.Context(), s.InsertID(table), id); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
			o.end(w)
		})
		mw := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))
		srv := httptest.NewServer(recoverer(mw(handler)))
		client := &http.Client{
			Transport:     &http.Transport{MaxIdleConnsPerHost: inFlight},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}

		statuses := make([]int, requests)
		errs := make([]error, requests)
		next := make(chan int)
		var wg sync.WaitGroup
		for range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range next {
					statuses[id], errs[id] = get(client, fmt.Sprintf("%s/?id=%d", srv.URL, id))
				}
			}()
		}
		for id := range requests {
			next <- id
		}
		close(next)
		wg.Wait()
		srv.Close() // waits for every handler to return
		client.CloseIdleConnections()

		in := map[int64]bool{}
		for _, id := range dbtest.IDs(t, db, table) {
			in[id] = true
		}
		var committed, rolledBack int64
		for id := range requests {
			o := outcomes[id%len(outcomes)]
			if errs[id] != nil {
				t.Errorf("request %d (%s): %v", id, o.name, errs[id])
				continue
			}
			if statuses[id] != o.status {
				t.Errorf("request %d (%s): status %d, want %d", id, o.name, statuses[id], o.status)
			}
			answered2xx := statuses[id] >= 200 && statuses[id] < 300
			if want := answered2xx && o.inserts; in[int64(id)] != want {
				t.Errorf("request %d (%s, answered %d): row present %v, want %v", id, o.name, statuses[id], in[int64(id)], want)
			}
			switch {
			case o.inserts && answered2xx:
				committed++
			case o.inserts:
				rolledBack++
			}
		}
		wantInUse(t, db, 0)
		wantStats(t, txs.Stats(), scoped.Stats{Created: committed + rolledBack, Committed: committed, RolledBack: rolledBack})
		if errs := log.all(); len(errs) > 0 {
			t.Errorf("%d teardown errors, the first: %v", len(errs), errs[0])
		}
		if s.Name == "postgres" {
			// ours counts the session asking, so the filter is known to match.
			var ours, idle int
			err := db.QueryRowContext(dbtest.Ctx(t), `SELECT count(*),
				count(*) FILTER (WHERE state LIKE 'idle in transaction%')
				FROM pg_stat_activity WHERE application_name = $1`, appName).Scan(&ours, &idle)
			if err != nil {
				t.Fatal(err)
			}
			if ours == 0 || idle != 0 {
				t.Errorf("%d of our %d sessions idle in transaction, want 0 of at least 1", idle, ours)
			}
		}
	})
}

func get(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

func sep(dsn string) string {
	if strings.Contains(dsn, "?") {
		return "&"
	}
	return "?"
}
