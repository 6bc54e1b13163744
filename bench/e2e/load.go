package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// newClient returns a keep-alive client for one variant's server: one
// idle connection per load client is kept, no proxy, no compression.
func newClient(clients int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil, // loopback only, never through $HTTP_PROXY
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        2 * clients,
		MaxIdleConnsPerHost: 2 * clients,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// target is one variant's server, as the load generator sees it.
type target struct {
	client *http.Client
	url    string // the server's base URL
}

// load is one round: of one variant, or of two at once.
type load struct {
	targets  []target      // one, or two for an interleaved round
	clients  int           // concurrent clients
	rows     int           // ids are drawn in [1, rows]
	mix      bool          // every other request of each client is GET /health
	duration time.Duration // used when requests == 0
	requests int           // > 0: stop after this many requests in all
}

// measurement is what one round of one variant did.
type measurement struct {
	OK     int    // requests answered 200
	DBOK   int    // of which POST /bump, which updated a row
	Failed int    // other statuses and transport errors
	Err    string // the first failure
	// Elapsed is the round's length, from the first request sent to the
	// last answer; in an interleaved round, the time the clients spent
	// waiting on this variant divided by their number.
	Elapsed time.Duration
	CPU     time.Duration // CPU time of this whole process meanwhile (0: unknown or shared)
	Delta   int64         // growth of the table's sum(n) during the round
	InUse   int           // connections still checked out after the round
}

// RPS is the round's throughput in successful requests per second.
func (m measurement) RPS() float64 {
	if m.Elapsed <= 0 {
		return 0
	}
	return float64(m.OK) / m.Elapsed.Seconds()
}

// CPUPerRequest is the process's CPU time per request, servers and load
// generator together, or 0 if unknown.
func (m measurement) CPUPerRequest() time.Duration {
	if n := m.OK + m.Failed; n > 0 {
		return m.CPU / time.Duration(n)
	}
	return 0
}

// run drives the targets with l.clients goroutines until the duration has
// passed, the request budget is spent, or ctx is done, whichever is first,
// and returns a measurement per target. With two targets every client
// alternates between them, and a target's Elapsed is the time the clients
// waited on it divided by their number: both targets are measured on the
// same machine at the same instants.
func (l load) run(ctx context.Context) []measurement {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		n       = len(l.targets)
		total   = make([]measurement, n)
		waited  = make([]time.Duration, n)
		tickets atomic.Int64
	)
	cpu0, start := processCPU(), time.Now()
	deadline := start.Add(l.duration)
	more := func() bool {
		if ctx.Err() != nil {
			return false
		}
		if l.requests > 0 {
			return tickets.Add(1) <= int64(l.requests)
		}
		return time.Now().Before(deadline)
	}
	for c := range l.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms := make([]measurement, n)
			ws := make([]time.Duration, n)
			// Clients start at different points of the cycle: target 0
			// /health, target 1 /health, target 0 /bump, … (mix), so that at
			// any instant about as many requests of each kind are in flight.
			for k := c; more(); k++ {
				side, t := k%n, l.targets[k%n]
				method, url, db := http.MethodPost, t.url+"/bump?id="+strconv.Itoa(1+rand.IntN(l.rows)), true
				if l.mix && (k/n)%2 == 0 {
					method, url, db = http.MethodGet, t.url+"/health", false
				}
				sent := time.Now()
				status, err := do(ctx, t.client, method, url)
				ws[side] += time.Since(sent)
				m := &ms[side]
				switch {
				case err == nil && status == http.StatusOK:
					m.OK++
					if db {
						m.DBOK++
					}
				default:
					m.Failed++
					if m.Err == "" {
						if err == nil {
							err = fmt.Errorf("%s %s: status %d", method, url, status)
						}
						m.Err = err.Error()
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for i, m := range ms {
				total[i].OK += m.OK
				total[i].DBOK += m.DBOK
				total[i].Failed += m.Failed
				if total[i].Err == "" {
					total[i].Err = m.Err
				}
				waited[i] += ws[i]
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), time.Duration(0)
	if cpu0 > 0 {
		cpu = processCPU() - cpu0
	}
	if n == 1 {
		total[0].Elapsed, total[0].CPU = elapsed, cpu
		return total
	}
	for i := range total {
		total[i].Elapsed = waited[i] / time.Duration(l.clients)
	}
	return total
}

// do sends one request and reads the whole answer, so that the
// connection goes back to the client's pool.
func do(ctx context.Context, c *http.Client, method, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return resp.StatusCode, err
	}
	return resp.StatusCode, nil
}
