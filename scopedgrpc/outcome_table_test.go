package scopedgrpc_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedgrpc"
	"github.com/go-scoped/scoped/scopedsql"
)

// Review 5: every combination of a hand commit (ScopedSession.Commit) and
// what follows it, through a unary call to a real grpc-go server with
// Autocommit and WithRetry, on the real PostgreSQL: the rows, how many
// times the handler ran, and the status the server ended the call with,
// which must be true of those rows: never OK for work not saved, never
// "not saved" or Aborted (retry) for work saved or maybe saved, and never
// a second run after either.
//
// The handler inserts id 1 in a transaction of its own and commits it by
// hand: (hand) not at all, for real, refused at COMMIT (a deferred check,
// id 1000001), or of unknown outcome (ErrCommitUnknown) having committed
// or rolled back. It then inserts id 2 in the call's transaction and
// (then) returns nil, returns a real serialization failure (40001), has
// its COMMIT refused (1000002) or failed with 40001 (-2), or outlives the
// call's deadline, or its client (leave).
func TestOutcomeTable(t *testing.T) {
	for _, hand := range []string{"none", "ok", "failed", "unknown-saved", "unknown-lost"} {
		for _, then := range []string{"ok", "retry", "commit-fail", "commit-40001", "deadline", "leave"} {
			t.Run(hand+"/"+then, func(t *testing.T) { outcomeRow(t, hand, then) })
		}
	}
}

func outcomeRow(t *testing.T, hand, then string) {
	db, table := openDB(t)
	insertQ := "INSERT INTO " + table + " (id) VALUES ($1)"
	handTxs := scopedsql.NewTx(db, nil, append([]scopedsql.Option{scoped.WithTeardownErrorHook(nil)}, handCommit(hand)...)...)
	rest := scopedsql.NewTx(db, nil, scoped.WithTeardownErrorHook(nil))

	var runs atomic.Int32
	var mu sync.Mutex
	var told []error
	inserted := make(chan struct{}, 4)
	exec := func(txs *scoped.ScopedSession[*sql.Tx], ctx context.Context, q string, args ...any) error {
		tx, err := txs.Current(ctx)
		if err == nil {
			_, err = tx.ExecContext(ctx, q, args...)
		}
		return err
	}
	h := &health{check: func(ctx context.Context) error {
		runs.Add(1)
		if hand != "none" {
			id := 1
			if hand == "failed" {
				id = 1000001
			}
			if err := exec(handTxs, ctx, insertQ, id); err != nil {
				t.Errorf("insert %d: %v", id, err)
			}
			_ = handTxs.Commit(ctx) // the handler goes on, whatever it says
		}
		id := map[string]int{"commit-fail": 1000002, "commit-40001": -2}[then]
		if id == 0 {
			id = 2
		}
		if err := exec(rest, ctx, insertQ, id); err != nil {
			t.Errorf("insert %d: %v", id, err)
		}
		inserted <- struct{}{}
		switch then {
		case "retry":
			return exec(rest, ctx, "DO $$ BEGIN RAISE EXCEPTION 'review5 conflict' USING ERRCODE = 'serialization_failure'; END $$")
		case "deadline", "leave":
			<-ctx.Done()
		}
		return nil
	}}
	fin, _, ended := finished()
	client := serve(t, h, grpc.ChainUnaryInterceptor(fin, scopedgrpc.UnaryServerInterceptor(
		scopedgrpc.WithCommitMode(scopedgrpc.Autocommit), scopedgrpc.Bind(rest),
		scopedgrpc.WithRetry(3, scopedsql.Retryable),
		scopedgrpc.WithErrorHandler(func(ctx context.Context, err error) error {
			mu.Lock()
			told = append(told, err)
			mu.Unlock()
			return scopedgrpc.DefaultErrorHandler(ctx, err)
		}))))

	ctx, cancel := context.WithCancel(dbtest.Ctx(t))
	defer cancel()
	if then == "deadline" {
		ctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
	}
	if then == "leave" {
		go func() {
			select {
			case <-inserted:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	_, _ = client.Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	serverErr := wait(t, ended) // what the server answered, read or not
	got := grpcAnswer(serverErr)
	rows := dbtest.IDs(t, db, table)
	mu.Lock()
	errs := slices.Clone(told)
	mu.Unlock()
	report := fmt.Sprintf("server answered %v (%s), rows %v, %d runs, error handler given %v", serverErr, got, rows, runs.Load(), errs)
	t.Log(report)
	if lie := dbtest.OutcomeLie(got, rows, dbtest.OutcomeIntended(hand, then), strings.HasPrefix(hand, "unknown"), int(runs.Load()),
		hand == "ok" || strings.HasPrefix(hand, "unknown")); lie != "" {
		t.Errorf("untrue: %s; %s", lie, report)
	}
	want, wantRuns := outcomeWant(hand, then)
	if got != want || int(runs.Load()) != wantRuns {
		t.Errorf("%s; want %s, %d runs", report, want, wantRuns)
	}
	if wantRows := dbtest.OutcomeRows(hand, then); !slices.Equal(rows, wantRows) {
		t.Errorf("rows %v, want %v; %s", rows, wantRows, report)
	}
	for _, err := range errs {
		if s := got.Sentinel(); s != nil && !errors.Is(err, s) {
			t.Errorf("the error behind %s does not wrap %v: %v", got, s, err)
		}
	}
	if n := db.Stats().InUse; n != 0 {
		t.Errorf("%d connections still in use after the call", n)
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
		// COMMIT never reached the server, which aborts the transaction of
		// a connection that died, as this rollback does.
		return []scopedsql.Option{scoped.WithCommit(unknownCommit)}
	}
	return nil
}

// An answer is what the server told the client, as DefaultErrorHandler
// words it (dbtest's, and an early end's).
type answer = dbtest.Answer

const (
	ansOK       = dbtest.AnswerOK
	ansNotSaved = dbtest.AnswerNotSaved
	ansRetry    = dbtest.AnswerRetry
	ansPartial  = dbtest.AnswerPartial
	ansMaybe    = dbtest.AnswerMaybe
	ansHandler  = dbtest.AnswerHandler
	ansEarly    = answer("ended early, uncommitted changes rolled back")
)

func grpcAnswer(err error) answer {
	st := status.Convert(err)
	switch m := st.Message(); {
	case err == nil:
		return ansOK
	case !strings.HasPrefix(m, "scopedgrpc:"):
		return ansHandler
	case strings.Contains(m, "may have been saved"):
		return ansMaybe
	case strings.Contains(m, "part of the call's changes were saved"):
		return ansPartial
	case st.Code() == codes.Aborted:
		return ansRetry
	case strings.Contains(m, "ended before its commit point"):
		return ansEarly
	case strings.Contains(m, "not saved"):
		return ansNotSaved
	}
	return answer("unclassified " + err.Error())
}

func outcomeWant(hand, then string) (answer, int) {
	unknown := strings.HasPrefix(hand, "unknown")
	nothing := hand == "none" || hand == "failed"
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
		if nothing {
			return ansHandler, 3 // the last run's own error
		}
		return ansHandler, 1
	case "commit-fail":
		switch {
		case nothing:
			return ansNotSaved, 1
		case unknown:
			return ansMaybe, 1
		}
		return ansPartial, 1
	case "commit-40001":
		switch {
		case nothing:
			return ansRetry, 3
		case unknown:
			return ansMaybe, 1
		}
		return ansPartial, 1
	case "deadline", "leave":
		// Like scopedhttp's answer: the call's own transaction was rolled
		// back, but a hand commit saved, or may have.
		switch {
		case nothing:
			return ansEarly, 1
		case unknown:
			return ansMaybe, 1
		}
		return ansPartial, 1
	}
	panic(then)
}
