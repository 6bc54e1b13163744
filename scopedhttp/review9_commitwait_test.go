package scopedhttp_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// Review 9: what happens while COMMIT itself waits. A deferred
// constraint trigger takes a PostgreSQL advisory lock that the test holds
// on a connection of its own, so the request's COMMIT waits, on the
// server, until the test lets it go; meanwhile the client leaves, or the
// WithTimeout deadline passes. Whatever the order, the row exists if and
// only if the client got a 2xx (or the client got nothing at all, having
// left), and the unit's OnCommit hook runs if and only if the row exists.

// r9LockTable creates an id table whose COMMIT waits for the advisory
// lock key (held elsewhere), then fails with check_violation when an id
// of 1,000,000 or more was inserted, with serialization_failure when a
// negative one was.
func r9LockTable(t *testing.T, db *sql.DB, prefix string) (table string, key int64) {
	t.Helper()
	table = dbtest.CreateIDTable(t, db, prefix)
	key = 1 + rand.Int64N(1<<30) // classid 0, objid key in pg_locks
	ddl := fmt.Sprintf(`
CREATE FUNCTION %[1]s_wait() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_xact_lock(%[2]d);
	IF NEW.id < 0 THEN
		RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = 'serialization_failure';
	END IF;
	IF NEW.id >= 1000000 THEN
		RAISE EXCEPTION 'injected commit failure' USING ERRCODE = 'check_violation';
	END IF;
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER %[1]s_wait AFTER INSERT ON %[1]s
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION %[1]s_wait();`, table, key)
	if _, err := db.ExecContext(dbtest.Ctx(t), ddl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP FUNCTION "+table+"_wait() CASCADE"); err != nil {
			t.Errorf("drop function: %v", err)
		}
	})
	return table, key
}

// r9Hold takes the advisory lock key on a connection of its own (not
// db's pool: the pool's in-use count is checked at the test's end) and
// returns what lets it go, also called at cleanup.
func r9Hold(t *testing.T, s dbtest.Server, key int64) (unlock func()) {
	t.Helper()
	db, err := sql.Open(s.Driver, s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(dbtest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(dbtest.Ctx(t), "SELECT pg_advisory_lock($1)", key); err != nil {
		t.Fatal(err)
	}
	done := false
	unlock = func() {
		if done {
			return
		}
		done = true
		if _, err := conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", key); err != nil {
			t.Errorf("unlock: %v", err)
		}
		_ = conn.Close()
		_ = db.Close()
	}
	t.Cleanup(unlock)
	return unlock
}

// r9WaitCommitBlocked waits until a COMMIT waits for the advisory lock key.
func r9WaitCommitBlocked(t *testing.T, db *sql.DB, key int64) {
	t.Helper()
	ctx := dbtest.Ctx(t)
	testkit.Eventually(t, "the request's COMMIT to wait for the lock", func() bool {
		var n int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE l.locktype = 'advisory' AND NOT l.granted AND l.classid = 0 AND l.objid = $1::bigint::oid
			AND upper(a.query) LIKE 'COMMIT%'`, key).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
}

// r9Timeout is the WithTimeout of the tests whose deadline passes while
// COMMIT waits: long enough for the handler to reach its commit first.
const r9Timeout = time.Second

// r9InTime skips t, letting the request go, if the handler took so long
// that the deadline might pass before its COMMIT begins: another case.
func r9InTime(t *testing.T, reqCtx context.Context, unlock func()) {
	t.Helper()
	if d, ok := reqCtx.Deadline(); ok && time.Until(d) < r9Timeout/2 {
		unlock()
		t.Skip("the handler was too slow: the deadline could pass before the COMMIT")
	}
}

// r9Outcome waits for the unit's hook, which must come once the handler
// has returned, and returns its kind: "commit" or "rollback".
func r9Outcome(t *testing.T, hooks <-chan string) string {
	t.Helper()
	kind := testkit.WaitFor(t, hooks, "the unit's hook")
	select {
	case other := <-hooks:
		t.Errorf("two hooks ran: %s and %s", kind, other)
	default:
	}
	return kind
}

// r9Handler inserts id, registers an OnCommit and an OnRollback hook
// that report to hooks, hands its request context to ctxs, and answers
// 201 with body.
func r9Handler(t *testing.T, s dbtest.Server, table string, id int, body string, hooks chan<- string, ctxs chan<- context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		r7Insert(r, s, table, id)
		if err := scoped.OnCommit(ctx, func(context.Context) { hooks <- "commit" }); err != nil {
			t.Errorf("OnCommit: %v", err)
		}
		if err := scoped.OnRollback(ctx, func(context.Context) { hooks <- "rollback" }); err != nil {
			t.Errorf("OnRollback: %v", err)
		}
		ctxs <- ctx
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, body)
	})
}

// A client that goes away while COMMIT waits: it got nothing (its
// request failed), and the row exists if and only if the OnCommit hook
// ran; a COMMIT that succeeds is not undone by the safety net, nor
// reported as rolled back; one that fails runs only OnRollback. Over
// HTTP/1.1 (the connection closes) and HTTP/2 (the stream is reset),
// with the response held or already streaming.
func TestReview9ClientLeavesWhileCommitWaits(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	const limit = 4 << 10
	for _, srv := range servers {
		for _, size := range []int{10, 4 * limit} {
			for _, fail := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s %dB fail=%v", srv.name, size, fail), func(t *testing.T) {
					table, key := r9LockTable(t, db, "r9_leave")
					unlock := r9Hold(t, s, key)
					id := 1
					if fail {
						id = 1_000_000
					}
					hooks := make(chan string, 2)
					ctxs := make(chan context.Context, 1)
					h, returned := returnedSignal(scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
						scopedhttp.Bind(r7Tx(db)), scopedhttp.WithBufferLimit(limit))(
						r9Handler(t, s, table, id, strings.Repeat("z", size), hooks, ctxs)))
					ts := srv.start(t, h)
					cctx, leave := context.WithCancel(dbtest.Ctx(t))
					defer leave()
					got := make(chan response, 1)
					go func() { got <- do(cctx, ts, http.MethodPost, "/") }()
					reqCtx := testkit.WaitFor(t, ctxs, "the handler")
					r9WaitCommitBlocked(t, db, key)
					leave()
					res := testkit.WaitFor(t, got, "the client's request to end")
					testkit.WaitFor(t, reqCtx.Done(), "the server to see the client leave")
					unlock()
					testkit.WaitFor(t, returned, "the handler to return")
					if res.err == nil {
						t.Errorf("the client that left read a complete %d %.20q", res.status, res.body)
					}
					kind := r9Outcome(t, hooks)
					ids := dbtest.IDs(t, db, table)
					if (len(ids) == 1) != (kind == "commit") {
						t.Errorf("rows %v but the %s hook ran", ids, kind)
					}
					if fail && len(ids) != 0 || !fail && len(ids) != 1 {
						t.Errorf("rows %v after a COMMIT that %s", ids, map[bool]string{true: "failed", false: "succeeded"}[fail])
					}
				})
			}
		}
	}
}

// WithTimeout's deadline passes while COMMIT waits, the client still
// there: the commit is not interrupted, and the answer tells its outcome:
// the 201 with the row saved, or an error with nothing saved; never a
// "not saved" error for a row that is there, never a 201 without it.
func TestReview9TimeoutPassesWhileCommitWaits(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	const limit = 4 << 10
	for _, srv := range servers {
		for _, size := range []int{10, 4 * limit} {
			for _, fail := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s %dB fail=%v", srv.name, size, fail), func(t *testing.T) {
					table, key := r9LockTable(t, db, "r9_timeout")
					unlock := r9Hold(t, s, key)
					id := 1
					if fail {
						id = 1_000_000
					}
					body := strings.Repeat("z", size)
					hooks := make(chan string, 2)
					ctxs := make(chan context.Context, 1)
					h, returned := returnedSignal(scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit),
						scopedhttp.Bind(r7Tx(db)), scopedhttp.WithBufferLimit(limit), scopedhttp.WithTimeout(r9Timeout))(
						r9Handler(t, s, table, id, body, hooks, ctxs)))
					ts := srv.start(t, h)
					got := make(chan response, 1)
					go func() { got <- do(dbtest.Ctx(t), ts, http.MethodPost, "/") }()
					reqCtx := testkit.WaitFor(t, ctxs, "the handler")
					r9InTime(t, reqCtx, unlock)
					r9WaitCommitBlocked(t, db, key)
					// Checked only once COMMIT has begun: a deadline that passed
					// before is another case (the request is rolled back).
					testkit.WaitFor(t, reqCtx.Done(), "the deadline to pass")
					unlock()
					res := testkit.WaitFor(t, got, "the answer")
					testkit.WaitFor(t, returned, "the handler to return")
					kind := r9Outcome(t, hooks)
					ids := dbtest.IDs(t, db, table)
					if (len(ids) == 1) != (kind == "commit") {
						t.Errorf("rows %v but the %s hook ran", ids, kind)
					}
					if !fail {
						if res.err != nil || res.status != http.StatusCreated || res.body != body || len(ids) != 1 {
							t.Errorf("client got %d %.40q, %v, rows %v; want the 201 and the row", res.status, res.body, res.err, ids)
						}
						return
					}
					if len(ids) != 0 {
						t.Errorf("rows %v after a failed COMMIT", ids)
					}
					if res.err == nil && res.status < 300 {
						t.Errorf("client read a complete %d for a failed COMMIT", res.status)
					}
					if res.err == nil && !strings.Contains(res.body, "not") {
						t.Errorf("client got %d %q for a failed COMMIT", res.status, res.body)
					}
				})
			}
		}
	}
}

// Two sessions, on PostgreSQL and MariaDB: the first COMMIT (PostgreSQL's,
// in creation order) waits while the deadline passes or the client
// leaves. The second session, not yet committed, is not the safety net's
// to roll back any more: the scope's commit has begun, so both rows are
// saved, or, when the first COMMIT fails, neither; never one of them.
func TestReview9SecondSessionSurvivesTheEndDuringTheFirstCommit(t *testing.T) {
	pg, my := dbtest.Postgres(t), dbtest.MySQL(t)
	pdb, mdb := openDB(t, pg), openDB(t, my)
	for _, leaveBy := range []string{"timeout", "client"} {
		for _, fail := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s fail=%v", leaveBy, fail), func(t *testing.T) {
				ptable, key := r9LockTable(t, pdb, "r9_two")
				mtable := dbtest.CreateIDTable(t, mdb, "r9_two")
				unlock := r9Hold(t, pg, key)
				id := 1
				if fail {
					id = 1_000_000
				}
				ptxs, mtxs := r7Tx(pdb), r7Tx(mdb)
				hooks := make(chan string, 2)
				ctxs := make(chan context.Context, 1)
				opts := []scopedhttp.Option{scopedhttp.WithCommitMode(scopedhttp.Autocommit)}
				if leaveBy == "timeout" {
					opts = append(opts, scopedhttp.WithTimeout(r9Timeout))
				}
				h, returned := returnedSignal(scopedhttp.Middleware(opts...)(
					http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						ctx := r.Context()
						for _, x := range []struct {
							txs interface {
								Current(context.Context) (*sql.Tx, error)
							}
							s     dbtest.Server
							table string
						}{{ptxs, pg, ptable}, {mtxs, my, mtable}} {
							tx, err := x.txs.Current(ctx)
							if err == nil {
								_, err = tx.ExecContext(ctx, x.s.InsertID(x.table), id)
							}
							if err != nil {
								panic(err)
							}
						}
						_ = scoped.OnCommit(ctx, func(context.Context) { hooks <- "commit" })
						_ = scoped.OnRollback(ctx, func(context.Context) { hooks <- "rollback" })
						ctxs <- ctx
						w.WriteHeader(http.StatusCreated)
					})))
				ts := serve(t, h)
				cctx, leave := context.WithCancel(dbtest.Ctx(t))
				defer leave()
				got := make(chan response, 1)
				go func() { got <- do(cctx, ts, http.MethodPost, "/") }()
				reqCtx := testkit.WaitFor(t, ctxs, "the handler")
				r9InTime(t, reqCtx, unlock)
				r9WaitCommitBlocked(t, pdb, key)
				if leaveBy == "client" {
					leave()
				}
				testkit.WaitFor(t, reqCtx.Done(), "the request's context to end")
				unlock()
				res := testkit.WaitFor(t, got, "the answer")
				testkit.WaitFor(t, returned, "the handler to return")
				kind := r9Outcome(t, hooks)
				p, m := dbtest.IDs(t, pdb, ptable), dbtest.IDs(t, mdb, mtable)
				switch {
				case fail && (len(p) != 0 || len(m) != 0 || kind != "rollback"):
					t.Errorf("rows %v and %v, hook %q after a failed first COMMIT; want none and OnRollback", p, m, kind)
				case !fail && (len(p) != 1 || len(m) != 1 || kind != "commit"):
					t.Errorf("rows %v and %v, hook %q after a successful first COMMIT; want both and OnCommit", p, m, kind)
				}
				if leaveBy == "client" {
					if res.err == nil {
						t.Errorf("the client that left got %d", res.status)
					}
					return
				}
				if !fail && (res.err != nil || res.status != http.StatusCreated) || fail && (res.err != nil || res.status < 500) {
					t.Errorf("client got %d %q, %v", res.status, res.body, res.err)
				}
			})
		}
	}
}

// Under WithRetry, a COMMIT that fails with a conflict after the request
// ended (the deadline passed, or the client left) while it waited is not
// run again: there is no time left for another run. The handler ran
// once, nothing is saved, and a client still there is told to retry
// (503), not that anything was saved.
func TestReview9RetryableCommitFailureAfterTheEndIsNotRunAgain(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	for _, leaveBy := range []string{"timeout", "client"} {
		t.Run(leaveBy, func(t *testing.T) {
			table, key := r9LockTable(t, db, "r9_retry")
			unlock := r9Hold(t, s, key)
			hooks := make(chan string, 4)
			ctxs := make(chan context.Context, 4)
			opts := []scopedhttp.Option{scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(r7Tx(db)),
				scopedhttp.WithRetry(3, scopedsql.Retryable)}
			if leaveBy == "timeout" {
				opts = append(opts, scopedhttp.WithTimeout(r9Timeout))
			}
			h, returned := returnedSignal(scopedhttp.Middleware(opts...)(r9Handler(t, s, table, -1, "ok", hooks, ctxs)))
			ts := serve(t, h)
			cctx, leave := context.WithCancel(dbtest.Ctx(t))
			defer leave()
			got := make(chan response, 1)
			go func() { got <- do(cctx, ts, http.MethodPost, "/") }()
			reqCtx := testkit.WaitFor(t, ctxs, "the handler")
			r9InTime(t, reqCtx, unlock)
			r9WaitCommitBlocked(t, db, key)
			if leaveBy == "client" {
				leave()
			}
			testkit.WaitFor(t, reqCtx.Done(), "the request's context to end")
			unlock()
			res := testkit.WaitFor(t, got, "the answer")
			testkit.WaitFor(t, returned, "the handler to return")
			if kind := r9Outcome(t, hooks); kind != "rollback" {
				t.Errorf("hook %q, want rollback", kind)
			}
			if n := len(ctxs); n != 0 {
				t.Errorf("the handler ran %d more time(s) after the request ended", n)
			}
			if ids := dbtest.IDs(t, db, table); len(ids) != 0 {
				t.Errorf("rows %v", ids)
			}
			if leaveBy == "client" {
				if res.err == nil {
					t.Errorf("the client that left got %d", res.status)
				}
				return
			}
			if res.err != nil || res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, "not saved") {
				t.Errorf("client got %d %q, %v; want a 503 saying nothing was saved", res.status, res.body, res.err)
			}
		})
	}
}

// Manual mode: the client leaves (or WithTimeout's deadline passes)
// while the handler's own commit (ScopedSession.Commit) waits. The
// commit's result tells the truth: nil if and only if the row is saved,
// and then the OnCommit hook runs; a client still there gets what the
// handler answered on that result.
func TestReview9ManualHandCommitWaitsWhileTheRequestEnds(t *testing.T) {
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	for _, leaveBy := range []string{"timeout", "client"} {
		for _, fail := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s fail=%v", leaveBy, fail), func(t *testing.T) {
				table, key := r9LockTable(t, db, "r9_hand")
				unlock := r9Hold(t, s, key)
				id := 1
				if fail {
					id = 1_000_000
				}
				txs := r7Tx(db)
				hooks := make(chan string, 2)
				ctxs := make(chan context.Context, 1)
				commitErr := make(chan error, 1)
				opts := []scopedhttp.Option{scopedhttp.Bind(txs), scopedhttp.WithUncommittedHook(nil)}
				if leaveBy == "timeout" {
					opts = append(opts, scopedhttp.WithTimeout(r9Timeout))
				}
				h, returned := returnedSignal(scopedhttp.Middleware(opts...)(
					http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						ctx := r.Context()
						r7Insert(r, s, table, id)
						_ = scoped.OnCommit(ctx, func(context.Context) { hooks <- "commit" })
						_ = scoped.OnRollback(ctx, func(context.Context) { hooks <- "rollback" })
						ctxs <- ctx
						err := txs.Commit(ctx)
						commitErr <- err
						if err != nil {
							http.Error(w, "not saved", http.StatusInternalServerError)
							return
						}
						w.WriteHeader(http.StatusCreated)
					})))
				ts := serve(t, h)
				cctx, leave := context.WithCancel(dbtest.Ctx(t))
				defer leave()
				got := make(chan response, 1)
				go func() { got <- do(cctx, ts, http.MethodPost, "/") }()
				reqCtx := testkit.WaitFor(t, ctxs, "the handler")
				r9InTime(t, reqCtx, unlock)
				r9WaitCommitBlocked(t, db, key)
				if leaveBy == "client" {
					leave()
				}
				testkit.WaitFor(t, reqCtx.Done(), "the request's context to end")
				unlock()
				res := testkit.WaitFor(t, got, "the answer")
				testkit.WaitFor(t, returned, "the handler to return")
				err := testkit.WaitFor(t, commitErr, "the hand commit")
				kind := r9Outcome(t, hooks)
				ids := dbtest.IDs(t, db, table)
				if (err == nil) != (len(ids) == 1) || (kind == "commit") != (len(ids) == 1) {
					t.Errorf("hand commit %v, rows %v, hook %q", err, ids, kind)
				}
				if fail == (len(ids) == 1) {
					t.Errorf("rows %v after a COMMIT that should have %s", ids, map[bool]string{true: "failed", false: "succeeded"}[fail])
				}
				if leaveBy == "timeout" && (res.err != nil || (res.status == http.StatusCreated) != (len(ids) == 1)) {
					t.Errorf("client got %d %q, %v with rows %v", res.status, res.body, res.err, ids)
				}
			})
		}
	}
}
