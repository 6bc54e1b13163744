package scopedhttp_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// Review 5: every combination of a hand commit (ScopedSession.Commit) and
// what follows it, through a real server on the real PostgreSQL: the rows
// in the table, how many times the handler ran, and what the client was
// told, which must be true of those rows: never success for work not
// saved, never "not saved" or "retry" for work saved or maybe saved, and
// never a second run after either.
//
// The handler inserts id 1 in a transaction of its own and commits it by
// hand, the commit being (hand) none, a real one, a real one refused at
// COMMIT (a deferred check, id 1000001), or one of unknown outcome
// (ErrCommitUnknown) that committed for real or rolled back; it then
// inserts id 2 in the request's transaction and (then) answers 201, fails
// a nested Run with a real serialization failure (40001, which asks the
// middleware to run the request again), has its COMMIT refused (a
// deferred check, 1000002) or failed with 40001 (-2), or outlives the
// request's deadline, or its client (leave: then the answer judged is the
// one the server gave). In Manual mode it ends with scope.Commit, or, for
// txcommit-fail, with the transaction's own Commit.
func TestOutcomeTable(t *testing.T) {
	hands := []string{"none", "ok", "failed", "unknown-saved", "unknown-lost"}
	thens := []string{"ok", "retry", "commit-fail", "commit-40001", "deadline", "leave"}
	s := dbtest.Postgres(t)
	db := openDB(t, s)
	for _, mode := range []string{"auto", "manual"} {
		for _, hand := range hands {
			for _, then := range append(slices.Clone(thens), "txcommit-fail") {
				if then == "txcommit-fail" && mode != "manual" {
					continue
				}
				t.Run(mode+"/"+hand+"/"+then, func(t *testing.T) {
					outcomeRow(t, db, mode, hand, then)
				})
			}
		}
	}
}

func outcomeRow(t *testing.T, db *sql.DB, mode, hand, then string) {
	want, wantRuns := outcomeWant(mode, hand, then)
	table := dbtest.CreateCommitFailureTable(t, db, "http_outcome")
	insert := "INSERT INTO " + table + " (id) VALUES ($1)"
	handTxs := scopedsql.NewTx(db, nil, append([]scopedsql.Option{scoped.WithTeardownErrorHook(nil)}, handCommit(hand)...)...)
	rest := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))

	var inserted func() // set before the request is sent
	var runs atomic.Int32
	var mu sync.Mutex
	var told []error // what the error handler was given
	record := func(err error) {
		mu.Lock()
		told = append(told, err)
		mu.Unlock()
	}
	opts := []scopedhttp.Option{scopedhttp.WithUncommittedHook(nil),
		scopedhttp.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
			record(err)
			scopedhttp.DefaultErrorHandler(w, r, err)
		})}
	if mode == "auto" {
		opts = append(opts, scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.WithRetry(3, scopedsql.Retryable))
	}
	if then == "deadline" {
		opts = append(opts, scopedhttp.WithTimeout(150*time.Millisecond))
	}
	answer := func(w http.ResponseWriter, r *http.Request, err error) {
		if err != nil {
			record(err)
			scopedhttp.DefaultErrorHandler(w, r, err)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}
	h := scopedhttp.Middleware(opts...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		ctx := r.Context()
		exec := func(txs *scoped.ScopedSession[*sql.Tx], ctx context.Context, q string, args ...any) error {
			tx, err := txs.Current(ctx)
			if err == nil {
				_, err = tx.ExecContext(ctx, q, args...)
			}
			return err
		}
		if hand != "none" {
			id := 1
			if hand == "failed" {
				id = 1000001
			}
			if err := exec(handTxs, ctx, insert, id); err != nil {
				t.Errorf("insert %d: %v", id, err)
			}
			_ = handTxs.Commit(ctx) // the handler goes on, whatever it says
		}
		id := map[string]int{"commit-fail": 1000002, "txcommit-fail": 1000002, "commit-40001": -2}[then]
		if id == 0 {
			id = 2
		}
		if err := exec(rest, ctx, insert, id); err != nil {
			t.Errorf("insert %d: %v", id, err)
		}
		if inserted != nil {
			inserted()
		}
		scope, _ := scoped.FromContext(ctx)
		switch then {
		case "retry":
			err := scoped.Run(ctx, func(ctx context.Context) error {
				return exec(rest, ctx, "DO $$ BEGIN RAISE EXCEPTION 'review5 conflict' USING ERRCODE = 'serialization_failure'; END $$")
			}, scoped.WithRetry(3, scopedsql.Retryable))
			http.Error(w, fmt.Sprintf("handler: %v", err), http.StatusInternalServerError)
			return
		case "deadline", "leave":
			<-ctx.Done()
		case "txcommit-fail":
			answer(w, r, rest.Commit(ctx))
			return
		}
		if mode == "manual" {
			answer(w, r, scope.Commit())
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	h, returned := returnedSignal(h)
	ts := serve(t, h)
	ctx, cancel := context.WithCancel(dbtest.Ctx(t))
	defer cancel()
	if then == "leave" {
		inserted = func() { cancel() } // the client leaves once the request's row is in
	}
	res := do(ctx, ts, http.MethodPost, "/")
	<-returned
	mu.Lock()
	errs := slices.Clone(told)
	mu.Unlock()
	if res.err != nil && then != "leave" {
		t.Fatalf("client: %v", res.err)
	}
	got := httpAnswer(res)
	if then == "leave" {
		// Nobody reads the answer: judge the one the server gave.
		got = ansOK
		if len(errs) > 0 {
			rec := httptest.NewRecorder()
			scopedhttp.DefaultErrorHandler(rec, nil, errs[len(errs)-1])
			got = httpAnswer(response{status: rec.Code, body: rec.Body.String()})
		}
	}
	rows := dbtest.IDs(t, db, table)
	intended := dbtest.OutcomeIntended(hand, then)
	wantRows := dbtest.OutcomeRows(hand, then)
	if mode == "manual" && (then == "deadline" || then == "leave") && slices.Contains(rows, 2) {
		// The handler's scope.Commit came before the safety net, which
		// runs on a goroutine of its own once the context is done: a
		// commit that wins keeps its outcome.
		want, _ = outcomeWant(mode, hand, "ok")
		wantRows = dbtest.OutcomeRows(hand, "ok")
	}
	report := fmt.Sprintf("client got %d %q (%s), rows %v, %d runs, error handler given %v", res.status,
		strings.TrimSpace(res.body), got, rows, runs.Load(), errs)
	t.Log(report)
	if lie := dbtest.OutcomeLie(got, rows, intended, strings.HasPrefix(hand, "unknown"), int(runs.Load()),
		hand == "ok" || strings.HasPrefix(hand, "unknown")); lie != "" {
		t.Errorf("untrue: %s; %s", lie, report)
	}
	if got != want || int(runs.Load()) != wantRuns {
		t.Errorf("%s; want %s, %d runs", report, want, wantRuns)
	}
	if !slices.Equal(rows, wantRows) {
		t.Errorf("rows %v, want %v; %s", rows, wantRows, report)
	}
	for _, err := range errs {
		if sentinel := got.Sentinel(); sentinel != nil && !errors.Is(err, sentinel) {
			t.Errorf("the error behind %s does not wrap %v: %v", got, sentinel, err)
		}
		if netWon := !slices.Contains(rows, 2); mode == "manual" && (then == "deadline" || then == "leave") && netWon &&
			!errors.Is(err, scoped.ErrScopeCancelled) {
			// ErrScopeClosed's and ErrScopeCancelled's contract: a scope
			// the safety net rolled back says so in its errors.
			t.Errorf("scope.Commit after the safety net = %v, want ErrScopeCancelled", err)
		}
	}
}

// handCommit is how the hand-committed transaction commits.
func handCommit(hand string) []scopedsql.Option {
	switch hand {
	case "unknown-saved":
		return []scopedsql.Option{scoped.WithCommit(func(_ context.Context, tx *sql.Tx) error {
			if err := tx.Commit(); err != nil {
				return err
			}
			return fmt.Errorf("review5: connection lost after COMMIT: %w", scoped.ErrCommitUnknown)
		})}
	case "unknown-lost":
		// COMMIT never reached the server: the server aborts the
		// transaction of a connection that died, as this rollback does.
		return []scopedsql.Option{scoped.WithCommit(func(_ context.Context, tx *sql.Tx) error {
			_ = tx.Rollback()
			return fmt.Errorf("review5: connection lost before COMMIT: %w", scoped.ErrCommitUnknown)
		})}
	}
	return nil
}

// An answer is what a client was told, as DefaultErrorHandler words it
// (dbtest's, and a vague one's).
type answer = dbtest.Answer

const (
	ansOK       = dbtest.AnswerOK
	ansNotSaved = dbtest.AnswerNotSaved
	ansRetry    = dbtest.AnswerRetry
	ansPartial  = dbtest.AnswerPartial
	ansMaybe    = dbtest.AnswerMaybe
	ansHandler  = dbtest.AnswerHandler
	ansVague    = answer("may not have been saved")
)

func httpAnswer(r response) answer {
	switch b := r.body; {
	case r.status >= 200 && r.status < 300:
		return ansOK
	case strings.HasPrefix(b, "handler:"):
		return ansHandler
	case strings.Contains(b, "may have been saved"):
		return ansMaybe
	case strings.Contains(b, "partially saved"):
		return ansPartial
	case strings.Contains(b, "retry it"):
		return ansRetry
	case strings.Contains(b, "may not have been saved"):
		return ansVague
	case strings.Contains(b, "not saved"):
		return ansNotSaved
	}
	return answer(fmt.Sprintf("unclassified %d", r.status))
}

// outcomeWant is the true answer the middleware (or, in Manual mode, the
// handler through DefaultErrorHandler) gives, and the runs.
func outcomeWant(mode, hand, then string) (answer, int) {
	unknown := strings.HasPrefix(hand, "unknown")
	nothing := hand == "none" || hand == "failed" // nothing saved by hand
	switch then {
	case "ok":
		switch {
		case hand == "none" || hand == "ok":
			return ansOK, 1
		case hand == "failed":
			return ansPartial, 1
		}
		return ansMaybe, 1
	case "retry":
		if mode == "auto" && nothing {
			return ansHandler, 3
		}
		return ansHandler, 1
	case "commit-fail", "txcommit-fail":
		switch {
		case nothing:
			return ansNotSaved, 1
		case unknown:
			return ansMaybe, 1
		}
		return ansPartial, 1
	case "commit-40001":
		switch {
		case nothing && mode == "auto":
			return ansRetry, 3
		case nothing:
			return ansRetry, 1
		case unknown:
			return ansMaybe, 1
		}
		return ansPartial, 1
	case "deadline", "leave":
		switch {
		case mode == "manual":
			return ansVague, 1 // scope.Commit after the net: ErrScopeClosed
		case nothing:
			return ansNotSaved, 1
		case unknown:
			return ansMaybe, 1
		}
		return ansPartial, 1
	}
	panic(then)
}
