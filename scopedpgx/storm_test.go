package scopedpgx

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/jackc/pgx/v5"
)

// 600 requests, 32 at a time, over a real HTTP server and a pool of 8
// connections, in Autocommit mode. Every request but the "none" ones
// inserts its id, then answers 201, 422, 503 or 302, or panics. Afterwards
// exactly the 201 ids are in the table, every session ended once, and no
// connection is acquired.
func TestHTTPStormCommitsExactlyThe2xxRequests(t *testing.T) {
	const (
		requests = 600
		inFlight = 32
	)
	pool := newPool(t, 8)
	table := newTable(t, pool, "pgx_storm")
	r := NewTx(pool, pgx.TxOptions{})
	h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(r))(app(r, table))
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the panics are expected
	srv.Start()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	outcomes := []struct {
		do   string
		code int // 0: the client sees the connection fail (the handler panicked)
	}{
		{"201", 201}, {"422", 422}, {"503", 503}, {"302", 302}, {"panic", 0}, {"none", 200},
	}
	var want []int
	for id := range requests {
		if id%len(outcomes) == 0 {
			want = append(want, id)
		}
	}

	work := make(chan int)
	var wg sync.WaitGroup
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				o := outcomes[id%len(outcomes)]
				resp, err := client.Post(fmt.Sprintf("%s/?id=%d&do=%s", srv.URL, id, o.do), "", nil)
				code := 0
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				if code != o.code {
					t.Errorf("id %d (%s): status %d (%v), want %d", id, o.do, code, err, o.code)
				}
			}
		}()
	}
	for id := range requests {
		work <- id
	}
	close(work)
	wg.Wait()
	srv.Close() // waits for every handler to return
	client.CloseIdleConnections()

	if got := ids(t, pool, table); !slices.Equal(got, want) {
		t.Errorf("%d rows committed, want the %d ids answered 201; extra/missing: %v", len(got), len(want),
			symmetricDiff(got, want))
	}
	touched := int64(requests - requests/len(outcomes)) // all but "none"
	wantStats := scoped.Stats{Created: touched, Committed: int64(len(want)), RolledBack: touched - int64(len(want))}
	if st := r.Stats(); st != wantStats {
		t.Errorf("stats %+v, want %+v", st, wantStats)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired", n)
	}
}

// symmetricDiff returns the elements of exactly one of two sorted slices.
func symmetricDiff(a, b []int) []int {
	var d []int
	for _, x := range a {
		if !slices.Contains(b, x) {
			d = append(d, x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			d = append(d, x)
		}
	}
	return d
}
