package scopedriver_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for dbtest.CreateCommitFailureTable
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/go-scoped/scoped/scopedriver"
)

// r10FailingCommit is added to a unit's id to make its COMMIT fail with
// 23514 (dbtest.CreateCommitFailureTable's deferred check).
const r10FailingCommit = 1_000_000

// r10Env is a River schema (newSchemaEnv) and a table whose COMMIT fails
// on demand, with an insert-only client and a ScopedSession of
// transactions on River's pool.
type r10Env struct {
	*schemaEnv
	fail   string // table of ids; an id >= r10FailingCommit fails the COMMIT (23514)
	client *river.Client[pgx.Tx]
	txs    *scoped.ScopedSession[pgx.Tx]
}

func newR10Env(t *testing.T) *r10Env {
	t.Helper()
	e := newSchemaEnv(t)
	db, err := sql.Open("pgx", dbtest.Postgres(t).DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return &r10Env{
		schemaEnv: e,
		fail:      dbtest.CreateCommitFailureTable(t, db, "r10_outbox"),
		client:    e.insertClient(t),
		txs:       scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil)),
	}
}

// write inserts id into the failing table in ctx's unit.
func (e *r10Env) write(ctx context.Context, id int64) error {
	tx, err := e.txs.Current(ctx)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "INSERT INTO "+e.fail+" (id) VALUES ($1)", id)
	return err
}

// saved says whether unit's row (id unit, or unit+r10FailingCommit) is
// in the failing table.
func (e *r10Env) saved(t *testing.T, unit int64) bool {
	t.Helper()
	return e.count(t, fmt.Sprintf("SELECT count(*) FROM %s WHERE id IN (%d, %d)", e.fail, unit, unit+r10FailingCommit)) > 0
}

// jobsOf counts the outbox jobs of unit.
func (e *r10Env) jobsOf(t *testing.T, unit int64) int {
	t.Helper()
	return e.count(t, fmt.Sprintf("SELECT count(*) FROM %s.river_job WHERE kind = 'scopedriver_outbox' AND (args->>'unit')::bigint = %d", e.schema, unit))
}

// server serves h under scopedhttp's middleware with opts and e.txs bound.
func (e *r10Env) server(t *testing.T, h http.HandlerFunc, opts ...scopedhttp.Option) *httptest.Server {
	t.Helper()
	opts = append(opts, scopedhttp.Bind(e.txs))
	srv := httptest.NewServer(scopedhttp.Middleware(opts...)(h))
	t.Cleanup(srv.Close)
	return srv
}

func r10Get(t *testing.T, url string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(dbtest.Ctx(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// In a request committed by scopedhttp's Autocommit, the jobs enqueued
// with Insert or InsertMany exist if and only if the request's rows do:
// none when the COMMIT itself fails (a real 23514 from a deferred check)
// or the handler answers 500, all of them (100 with InsertMany) when it
// commits.
func TestReview10OutboxInAutocommitRequest(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		jobs       int  // 1: Insert; more: InsertMany
		failCommit bool // the row's deferred check fails the COMMIT
		status     int
		committed  bool
	}{
		{"insert/commits", 1, false, http.StatusOK, true},
		{"insert/commit fails", 1, true, http.StatusOK, false},
		{"insert/500", 1, false, http.StatusInternalServerError, false},
		{"many/commits", 100, false, http.StatusOK, true},
		{"many/commit fails", 100, true, http.StatusOK, false},
		{"many/500", 100, false, http.StatusInternalServerError, false},
	}
	e := newR10Env(t)
	for i, c := range cases {
		unit := int64(i + 1)
		t.Run(c.name, func(t *testing.T) {
			srv := e.server(t, func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				id := unit
				if c.failCommit {
					id += r10FailingCommit
				}
				if err := e.write(ctx, id); err != nil {
					http.Error(w, err.Error(), http.StatusTeapot)
					return
				}
				var err error
				if c.jobs == 1 {
					_, err = scopedriver.Insert(ctx, e.txs, e.client, outboxArgs{Unit: unit}, nil)
				} else {
					params := make([]river.InsertManyParams, c.jobs)
					for j := range params {
						params[j] = river.InsertManyParams{Args: outboxArgs{Unit: unit}}
					}
					var res []*rivertype.JobInsertResult
					res, err = scopedriver.InsertMany(ctx, e.txs, e.client, params)
					if err == nil && len(res) != c.jobs {
						err = fmt.Errorf("InsertMany returned %d results, want %d", len(res), c.jobs)
					}
				}
				if err != nil {
					http.Error(w, err.Error(), http.StatusTeapot)
					return
				}
				w.WriteHeader(c.status)
			}, scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.WithErrorHandler(func(w http.ResponseWriter, _ *http.Request, _ error) {
				w.WriteHeader(http.StatusServiceUnavailable)
			}))
			status := r10Get(t, srv.URL)
			if status == http.StatusTeapot {
				t.Fatalf("the handler failed")
			}
			if got := status >= 200 && status < 300; got != c.committed {
				t.Errorf("status %d, want 2xx: %v", status, c.committed)
			}
			saved, jobs := e.saved(t, unit), e.jobsOf(t, unit)
			want := 0
			if c.committed {
				want = c.jobs
			}
			if saved != c.committed || jobs != want {
				t.Errorf("unit's row saved: %v, jobs %d; want saved %v with %d jobs", saved, jobs, c.committed, want)
			}
		})
	}
	if n := e.pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections left acquired", n)
	}
}

// Insert and InsertMany with a request's context after its scope ended
// (the handler returned; or, in Manual mode, after the handler's own
// Scope.Commit) fail and enqueue nothing: never an insert on the pool.
func TestReview10InsertAfterTheScopeEnded(t *testing.T) {
	t.Parallel()
	e := newR10Env(t)
	const afterHandler, afterCommit = 100, 200
	late := make(chan context.Context, 1)
	inHandler := make(chan error, 2)
	srv := e.server(t, func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if r.URL.Path == "/commit" {
			if err := e.write(ctx, afterCommit); err != nil {
				inHandler <- err
				return
			}
			s, _ := scoped.FromContext(ctx)
			if err := s.Commit(); err != nil {
				inHandler <- err
				return
			}
			_, err := scopedriver.Insert(ctx, e.txs, e.client, outboxArgs{Unit: afterCommit}, nil)
			inHandler <- err
			_, err = scopedriver.InsertMany(ctx, e.txs, e.client, []river.InsertManyParams{{Args: outboxArgs{Unit: afterCommit}}})
			inHandler <- err
			return
		}
		if err := e.write(ctx, afterHandler); err != nil {
			http.Error(w, err.Error(), http.StatusTeapot)
			return
		}
		late <- ctx
	}, scopedhttp.WithCommitMode(scopedhttp.Autocommit))

	if status := r10Get(t, srv.URL+"/"); status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	ctx := <-late
	if _, err := scopedriver.Insert(ctx, e.txs, e.client, outboxArgs{Unit: afterHandler}, nil); err == nil {
		t.Errorf("Insert after the request's scope ended: no error")
	}
	if _, err := scopedriver.InsertMany(ctx, e.txs, e.client, []river.InsertManyParams{{Args: outboxArgs{Unit: afterHandler}}}); err == nil {
		t.Errorf("InsertMany after the request's scope ended: no error")
	}
	if !e.saved(t, afterHandler) {
		t.Errorf("the request's row was not committed")
	}
	if n := e.jobsOf(t, afterHandler); n != 0 {
		t.Errorf("%d jobs enqueued after the request's scope ended", n)
	}

	r10Get(t, srv.URL+"/commit")
	for range 2 {
		if err := <-inHandler; !errors.Is(err, scoped.ErrScopeClosed) {
			t.Errorf("Insert after the handler's Scope.Commit = %v, want ErrScopeClosed", err)
		}
	}
	if !e.saved(t, afterCommit) {
		t.Errorf("the handler's commit saved nothing")
	}
	if n := e.jobsOf(t, afterCommit); n != 0 {
		t.Errorf("%d jobs enqueued after the handler's Scope.Commit", n)
	}
	if n := e.pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections left acquired", n)
	}
}

type r10Key struct{}

// A ScopedSession keyed on a context value (WithScopeFunc) finds a
// session without any unit: Insert still fails with ErrNoScope there and
// takes no connection.
func TestReview10InsertWithScopeFuncOutsideAUnit(t *testing.T) {
	t.Parallel()
	e := newR10Env(t)
	txs := scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithScopeFunc(scoped.ContextValue(r10Key{})))
	ctx := context.WithValue(dbtest.Ctx(t), r10Key{}, "request-1")
	if _, err := scopedriver.Insert(ctx, txs, e.client, outboxArgs{Unit: 1}, nil); !errors.Is(err, scoped.ErrNoScope) {
		t.Errorf("Insert = %v, want ErrNoScope", err)
	}
	if _, err := scopedriver.InsertMany(ctx, txs, e.client, []river.InsertManyParams{{Args: outboxArgs{Unit: 1}}}); !errors.Is(err, scoped.ErrNoScope) {
		t.Errorf("InsertMany = %v, want ErrNoScope", err)
	}
	if n := e.jobsOf(t, 1); n != 0 {
		t.Errorf("%d jobs enqueued outside a unit", n)
	}
	if n := e.pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections acquired outside a unit", n)
	}
}

// In a request that commits, a nested scoped.Run that rolls back (an
// error, or a panic recovered by the handler) takes its jobs, one or a
// hundred, with its rows; the request's own job and row stay.
func TestReview10NestedRunRollsBackItsJobs(t *testing.T) {
	t.Parallel()
	e := newR10Env(t)
	errChild := errors.New("child fails")
	const outer, child, childMany, kept = 1, 2, 3, 4
	srv := e.server(t, func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		fail := func(err error) { http.Error(w, err.Error(), http.StatusTeapot) }
		if err := e.write(ctx, outer); err != nil {
			fail(err)
			return
		}
		if _, err := scopedriver.Insert(ctx, e.txs, e.client, outboxArgs{Unit: outer}, nil); err != nil {
			fail(err)
			return
		}
		err := scoped.Run(ctx, func(ctx context.Context) error {
			if err := e.write(ctx, child); err != nil {
				return err
			}
			if _, err := scopedriver.Insert(ctx, e.txs, e.client, outboxArgs{Unit: child}, nil); err != nil {
				return err
			}
			params := make([]river.InsertManyParams, 100)
			for j := range params {
				params[j] = river.InsertManyParams{Args: outboxArgs{Unit: childMany}}
			}
			if _, err := scopedriver.InsertMany(ctx, e.txs, e.client, params); err != nil {
				return err
			}
			return errChild
		})
		if !errors.Is(err, errChild) {
			fail(fmt.Errorf("child: %v", err))
			return
		}
		// A sibling child that commits: released into the request's unit.
		if err := scoped.Run(ctx, func(ctx context.Context) error {
			if err := e.write(ctx, kept); err != nil {
				return err
			}
			_, err := scopedriver.Insert(ctx, e.txs, e.client, outboxArgs{Unit: kept}, nil)
			return err
		}); err != nil {
			fail(err)
			return
		}
	}, scopedhttp.WithCommitMode(scopedhttp.Autocommit))
	if status := r10Get(t, srv.URL); status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	var got []string
	for _, u := range []int64{outer, child, childMany, kept} {
		got = append(got, fmt.Sprintf("%d:%v/%d", u, e.saved(t, u), e.jobsOf(t, u)))
	}
	want := []string{"1:true/1", "2:false/0", "3:false/0", "4:true/1"}
	if !slices.Equal(got, want) {
		t.Errorf("unit:saved/jobs %v, want %v", got, want)
	}
}

// A request whose first run fails at COMMIT with 40001 (a deferred check)
// is run again by WithRetry: the jobs of the failed run, one or a hundred,
// are gone with it, and those of the run that commits exist once.
func TestReview10OutboxInRetriedRequest(t *testing.T) {
	t.Parallel()
	e := newR10Env(t)
	for _, c := range []struct {
		unit int64
		jobs int
	}{{1, 1}, {2, 100}} {
		t.Run(fmt.Sprintf("jobs=%d", c.jobs), func(t *testing.T) {
			var runs atomic.Int32
			srv := e.server(t, func(w http.ResponseWriter, r *http.Request) {
				ctx := r.Context()
				id := c.unit
				if runs.Add(1) == 1 {
					id = -c.unit // 40001 at COMMIT
				}
				if err := e.write(ctx, id); err != nil {
					http.Error(w, err.Error(), http.StatusTeapot)
					return
				}
				params := make([]river.InsertManyParams, c.jobs)
				for j := range params {
					params[j] = river.InsertManyParams{Args: outboxArgs{Unit: c.unit}}
				}
				if _, err := scopedriver.InsertMany(ctx, e.txs, e.client, params); err != nil {
					http.Error(w, err.Error(), http.StatusTeapot)
				}
			}, scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.WithRetry(3, scopedpgx.Retryable))
			if status := r10Get(t, srv.URL); status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			if n := runs.Load(); n != 2 {
				t.Errorf("handler ran %d times, want 2", n)
			}
			neg := e.count(t, fmt.Sprintf("SELECT count(*) FROM %s WHERE id = %d", e.fail, -c.unit))
			if !e.saved(t, c.unit) || neg != 0 {
				t.Errorf("rows: the committed run's saved %v, the failed run's %d", e.saved(t, c.unit), neg)
			}
			if n := e.jobsOf(t, c.unit); n != c.jobs {
				t.Errorf("%d jobs, want %d (the committed run's only)", n, c.jobs)
			}
		})
	}
}
