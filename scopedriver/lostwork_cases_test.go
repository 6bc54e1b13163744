package scopedriver_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/scopedpgx"
	"github.com/go-scoped/scoped/scopedriver"
)

// lostArgs is a job that inserts a row and ends its transaction by hand
// as Mode says, ignoring the error, then returns nil.
type lostArgs struct {
	Mode string `json:"mode"`
}

func (lostArgs) Kind() string { return "scopedriver_lost" }

func (lostArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: 1} }

// The cases of commit 8aa76c7 through the middleware, on the real
// PostgreSQL: a job whose hand commit (ScopedSession.Commit) failed, which
// it ignores before returning nil, lost its work: River must not record
// it completed (with MaxAttempts 1: discarded), with River completing the
// job and with CompleteTx. A transaction removed by hand
// (ScopedSession.Remove) is the job's decision: the job completes with
// the rest of its work.
func TestLostWorkCases(t *testing.T) {
	t.Parallel()
	cases := []struct {
		mode  string
		state string
		rows  []int // attempts whose row is committed (attempt 1: the row after a Remove)
	}{
		{"fail", "discarded", nil},
		{"remove", "completed", []int{1}},
	}
	for _, completeTx := range []bool{false, true} {
		for _, c := range cases {
			if completeTx && c.mode == "fail" {
				// Not covered: CompleteTx completes the job in the transaction
				// after the failed hand commit, which commits; docs/river.md
				// says not to commit by hand in Work.
				continue
			}
			t.Run(fmt.Sprintf("CompleteTx=%v/%s", completeTx, c.mode), func(t *testing.T) {
				t.Parallel()
				e := newSchemaEnv(t)
				// id 0 is taken: a hand commit of another row with id 0
				// fails at COMMIT (the unique key is deferred).
				if _, err := e.pool.Exec(dbtest.Ctx(t), "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES (0, 0, 0)"); err != nil {
					t.Fatal(err)
				}
				txs := scopedpgx.NewTx(e.pool, pgx.TxOptions{}, scoped.WithTeardownErrorHook(nil))
				opts := []scopedriver.Option{scopedriver.Bind(txs)}
				if completeTx {
					opts = append(opts, scopedriver.CompleteTx(txs))
				}
				workers := river.NewWorkers()
				river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[lostArgs]) error {
					tx, err := txs.Current(ctx)
					if err != nil {
						return err
					}
					switch job.Args.Mode {
					case "fail":
						if _, err := tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES ($1, 1, 0)", job.ID); err != nil {
							return err
						}
						if err := txs.Commit(ctx); err == nil {
							t.Errorf("hand commit succeeded; the deferred unique key should fail it")
						} // ignored
					case "remove":
						if _, err := tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES ($1, 2, $1)", job.ID); err != nil {
							return err
						}
						if err := txs.Remove(ctx); err != nil {
							t.Errorf("hand remove: %v", err)
						}
						if tx, err = txs.Current(ctx); err != nil {
							return err
						}
						if _, err := tx.Exec(ctx, "INSERT INTO "+e.table+" (job_id, attempt, id) VALUES ($1, 1, $1)", job.ID); err != nil {
							return err
						}
					}
					return nil
				}))
				ins, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{Logger: quietLogger(), Schema: e.schema})
				if err != nil {
					t.Fatal(err)
				}
				res, err := ins.Insert(dbtest.Ctx(t), lostArgs{Mode: c.mode}, nil)
				if err != nil {
					t.Fatal(err)
				}
				client := e.startClient(t, e.clientConfig(workers, scopedriver.NewMiddleware(opts...)))
				e.awaitDrained(t, dbtest.Bound)
				stopClient(t, client)
				if got := e.job(t, res.Job.ID).State; got != c.state {
					t.Errorf("job %s, want %s", got, c.state)
				}
				if got := e.attempts(t, res.Job.ID); fmt.Sprint(got) != fmt.Sprint(c.rows) && !(len(got) == 0 && len(c.rows) == 0) {
					t.Errorf("committed rows of attempts %v, want %v", got, c.rows)
				}
			})
		}
	}
}
