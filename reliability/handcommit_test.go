package reliability_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// A handler that commits by hand (txs.Commit(ctx), the README's pattern,
// here in Autocommit mode, as a handler that streams afterwards would)
// and goes on past the request's deadline keeps its answer: the safety
// net that fires then finds nothing to end and changes no outcome. It
// used to mark the emptied scope cancelled, and the client got 503 "not
// saved" for saved work.
func TestHandCommitThenDeadlineKeepsTheAnswer(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s dbtest.Server) {
		// The request's deadline passes right after the hand commit, not
		// after a time the work before it could outlast on a busy machine.
		deadline := newPassingDeadline()
		p := openPool(t, s, 2)
		table := createTable(t, p, "scoped_handcommit")
		txs := scoped.New(scopedsql.Tx(p.DB, nil))
		h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			tx, err := txs.Current(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := tx.ExecContext(ctx, sqlFor(s, "INSERT INTO "+table+" (id, kind) VALUES ($1, $2)"), 1, "hand"); err != nil {
				t.Error(err)
				return
			}
			if err := txs.Commit(ctx); err != nil {
				t.Errorf("hand commit: %v", err)
				return
			}
			deadline.pass()
			<-ctx.Done() // the handler goes on past the deadline (rendering, a slow call)
			// Give a net that would wrongly end the scope its chance to run:
			// with the fix nothing ever happens, so this wait always runs out.
			scope, _ := scoped.FromContext(ctx)
			for range 10 {
				if scope.Err() != nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			w.WriteHeader(http.StatusCreated)
		}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil).WithContext(deadline))
		if rec.Code != http.StatusCreated {
			t.Fatalf("status %d (%s), want 201 for work committed by hand", rec.Code, rec.Body)
		}
		if ids := rowIDs(t, p, table); ids[1] != 1 {
			t.Fatalf("rows %v, want id 1 saved", ids)
		}
		if !errors.Is(deadline.Err(), context.DeadlineExceeded) {
			t.Fatal("the deadline did not pass: the test did not exercise its case")
		}
	})
}

// passingDeadline is a request's context with a deadline that passes when
// the test says so: Done is closed and Err is context.DeadlineExceeded.
type passingDeadline struct {
	context.Context
	deadline time.Time
	done     chan struct{}
	once     sync.Once
}

func newPassingDeadline() *passingDeadline {
	return &passingDeadline{Context: context.Background(), deadline: time.Now().Add(time.Hour), done: make(chan struct{})}
}

func (c *passingDeadline) pass() { c.once.Do(func() { close(c.done) }) }

func (c *passingDeadline) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *passingDeadline) Done() <-chan struct{}       { return c.done }
func (c *passingDeadline) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
