package scopedhttp_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// conflict is a serialization failure as a driver reports it: SQLSTATE
// 40001, which scopedsql.Retryable accepts.
type conflict struct{}

func (conflict) Error() string    { return "fake: could not serialize access due to concurrent update" }
func (conflict) SQLState() string { return "40001" }

// failCommits makes fx's first n commits fail with a conflict.
func failCommits(fx *fixture, n int) {
	var commits atomic.Int32
	fx.onCommit = func(*fakeTx) {
		if int(commits.Add(1)) <= n {
			fx.commitErr = conflict{}
		} else {
			fx.commitErr = nil
		}
	}
}

// echo is a handler that uses a session, sets a header naming its run,
// and answers 201 with the request body it read.
func echo(t *testing.T, runs *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := runs.Add(1)
		session(t, r)
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body in run %d: %v", n, err)
		}
		w.Header().Set("X-Run", strconv.Itoa(int(n)))
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(b)
	})
}

func post(t *testing.T, ts interface{ Client() *http.Client }, url, body string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

// A commit that fails on a conflict runs the request again, with its
// body replayed and the failed runs' headers and bodies gone.
func TestRetryAfterCommitConflictReplaysTheBody(t *testing.T) {
	fx := newFixture()
	failCommits(fx, 2)
	var runs atomic.Int32
	ts := serve(t, fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
		scopedhttp.WithRetry(5, scopedsql.Retryable))(echo(t, &runs)))
	got := post(t, ts, ts.URL, "hello, retry")
	if got.err != nil || got.status != http.StatusCreated || got.body != "hello, retry" {
		t.Fatalf("got %d %q (%v), want 201 with the body replayed", got.status, got.body, got.err)
	}
	if v := got.header.Values("X-Run"); len(v) != 1 || v[0] != "3" {
		t.Errorf("X-Run = %q, want only the third run's", v)
	}
	if runs.Load() != 3 {
		t.Errorf("%d runs, want 3", runs.Load())
	}
	fx.wantEnded(t, "three runs, two commits failing", 3, 0)
}

// The attempts are bounded, and a conflict after the last one is a 503
// that tells the client to retry, never a 500 "not saved".
func TestRetryIsBoundedThen503(t *testing.T) {
	fx := newFixture()
	fx.commitErr = conflict{}
	var runs atomic.Int32
	ts := serve(t, fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
		scopedhttp.WithRetry(3, scopedsql.Retryable))(echo(t, &runs)))
	got := post(t, ts, ts.URL, "x")
	if got.status != http.StatusServiceUnavailable || got.header.Get("Retry-After") == "" {
		t.Errorf("got %d, Retry-After %q; want 503 with Retry-After", got.status, got.header.Get("Retry-After"))
	}
	if runs.Load() != 3 {
		t.Errorf("%d runs, want 3", runs.Load())
	}
}

// Without WithRetry, a commit that failed on a serialization failure is
// answered 503 with Retry-After, so that the client can tell "try again"
// from a failure.
func TestCommitConflictWithoutRetryIs503(t *testing.T) {
	fx := newFixture()
	fx.commitErr = conflict{}
	var runs atomic.Int32
	ts := serve(t, fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(echo(t, &runs)))
	got := post(t, ts, ts.URL, "x")
	if got.status != http.StatusServiceUnavailable || got.header.Get("Retry-After") != "1" || !strings.Contains(got.body, "retry") {
		t.Errorf("got %d %q, Retry-After %q; want 503, Retry-After: 1", got.status, got.body, got.header.Get("Retry-After"))
	}
	if runs.Load() != 1 {
		t.Errorf("%d runs, want 1", runs.Load())
	}
}

// nestedUnit is a service function in its own unit of work with
// retries, failing with a conflict while fails is above zero.
func nestedUnit(fails *atomic.Int32) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return scoped.Run(ctx, func(ctx context.Context) error {
			if _, err := scoped.Current[*fakeTx](ctx); err != nil {
				return err
			}
			if fails.Add(-1) >= 0 {
				return conflict{}
			}
			return nil
		}, scoped.WithRetry(3, scopedsql.Retryable))
	}
}

// A unit inside the request that fails on a conflict asks the middleware
// to run the request again, even if the handler answered the error.
func TestRetryAskedByANestedRun(t *testing.T) {
	fx := newFixture()
	var runs, fails atomic.Int32
	fails.Store(2)
	unit := nestedUnit(&fails)
	ts := serve(t, fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
		scopedhttp.WithRetry(5, scopedsql.Retryable))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		if err := unit(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError) // swallowed: the middleware retries all the same
			return
		}
		w.WriteHeader(http.StatusCreated)
	})))
	got := post(t, ts, ts.URL, "")
	if got.status != http.StatusCreated || runs.Load() != 3 {
		t.Errorf("got %d after %d runs, want 201 after 3", got.status, runs.Load())
	}
	fx.wantEnded(t, "two rolled back, one committed", 1, 2)
}

// Once anything of the response has left the server, the request is not
// run again: a flush, then a unit asking for a retry, then a failed commit.
func TestNoRetryAfterFlush(t *testing.T) {
	fx := newFixture()
	fx.commitErr = conflict{}
	var runs, fails atomic.Int32
	fails.Store(100)
	unit := nestedUnit(&fails)
	ts := serve(t, fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
		scopedhttp.WithRetry(5, scopedsql.Retryable))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		_, _ = io.WriteString(w, "streamed")
		http.NewResponseController(w).Flush()
		_ = unit(r.Context())
	})))
	got := post(t, ts, ts.URL, "")
	if got.err == nil {
		t.Errorf("got %d %q, want a broken response (the commit failed while streaming)", got.status, got.body)
	}
	if runs.Load() != 1 {
		t.Errorf("%d runs, want 1: nothing is run again after a flush", runs.Load())
	}
}

// A request whose handler read more of its body than the limit is not
// run again.
func TestNoRetryPastTheBodyLimit(t *testing.T) {
	fx := newFixture()
	fx.commitErr = conflict{}
	var runs atomic.Int32
	ts := serve(t, fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
		scopedhttp.WithRetry(5, scopedsql.Retryable), scopedhttp.WithRetryBodyLimit(4))(echo(t, &runs)))
	got := post(t, ts, ts.URL, "longer than four bytes")
	if got.status != http.StatusServiceUnavailable || runs.Load() != 1 {
		t.Errorf("got %d after %d runs, want 503 after 1", got.status, runs.Load())
	}
	// Within the limit, it is.
	runs.Store(0)
	got = post(t, ts, ts.URL, "four")
	if got.status != http.StatusServiceUnavailable || runs.Load() != 5 {
		t.Errorf("got %d after %d runs, want 503 after 5", got.status, runs.Load())
	}
}

func TestRetryNeedsAnAutomaticMode(t *testing.T) {
	defer func() {
		if p := recover(); p == nil || !strings.Contains(p.(string), "automatic commit mode") {
			t.Errorf("panic = %v, want one naming the automatic commit modes", p)
		}
	}()
	scopedhttp.Middleware(scopedhttp.WithRetry(3, scopedsql.Retryable))
}

// A unit that asks for a retry under a middleware without WithRetry is
// not silently ignored: the request ends as the handler said, and a
// warning names the call site.
func TestRetryAskedWithoutWithRetryWarns(t *testing.T) {
	logs := captureLog(t)
	fx := newFixture()
	var runs, fails atomic.Int32
	fails.Store(100)
	unit := nestedUnit(&fails)
	ts := serve(t, fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		if err := unit(r.Context()); err != nil {
			http.Error(w, "conflict", http.StatusConflict)
		}
	})))
	got := post(t, ts, ts.URL, "")
	if got.status != http.StatusConflict || runs.Load() != 1 {
		t.Errorf("got %d after %d runs, want the handler's 409 after 1", got.status, runs.Load())
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "nothing retries") ||
		!strings.Contains(out, "retry_test.go:") {
		t.Errorf("log %q, want a warning naming the call site", out)
	}
}
