package scopedpgx

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/shared/xact"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestServerRestartLosesNothingAndMakesNoPhantom is [dbtest.RestartLoad]
// on pgx with scopedpgx's verified commit (its default), the same test as
// the reliability package's on lib/pq: answers saved, not saved and
// unknown checked against the rows after restarts and crashes under 16
// writers. The id is the one scopedpgx read, and a pgx tracer records
// what the resolver asked (xact.StatusSQL) and the errors it got, so that
// a wrong answer comes with its evidence. Before dcebe73 it lost up to 13
// writes a run: RELIABILITY.md, "Server restart".
func TestServerRestartLosesNothingAndMakesNoPhantom(t *testing.T) {
	c := dbtest.NewCluster(t)
	const writers = 16
	const resolve = DefaultCommitResolveTimeout
	cfg, err := pgxpool.ParseConfig(c.DSN)
	if err != nil {
		t.Fatal(err)
	}
	// A connection for every writer and some to spare; scopedpgx frees a
	// failed COMMIT's slot for its resolution anyway.
	cfg.MaxConns = writers + 4
	resolver := &resolverTrace{asked: map[string]int{}, errs: map[string][]string{}}
	cfg.ConnConfig.Tracer = resolver
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close) // before the cluster is dropped
	table := newTable(t, pool, "restart")
	var teardownErrs testkit.Errors
	txs := scoped.New(Tx(pool, pgx.TxOptions{}, WithCommitResolveTimeout(resolve)),
		scoped.WithRollback(Rollback), scoped.WithTeardownErrorHook(teardownErrs.Hook))

	// unit inserts id in a scope of its own and commits it; committing
	// says whether COMMIT was sent, xid is the transaction's id as
	// scopedpgx read it (what its resolver asks about).
	unit := func(ctx context.Context, id int64) (committing bool, xid string, err error) {
		ctx, scope := scoped.Begin(ctx)
		defer scope.Remove()
		ptx, err := txs.Current(ctx)
		if err != nil {
			return false, "", err
		}
		_, err = ptx.Exec(ctx, "INSERT INTO "+table+" (id) VALUES ($1)", id)
		xid = ptx.(*tx).xid
		if err != nil {
			return false, xid, err
		}
		return true, xid, scope.Commit()
	}

	saved := func() []int64 {
		var out []int64
		for _, id := range ids(t, pool, table) {
			out = append(out, int64(id))
		}
		return out
	}
	dbtest.RestartLoad{
		Writers:      writers,
		Resolve:      resolve,
		Unit:         unit,
		Saved:        saved,
		InUse:        func() int { return int(pool.Stat().AcquiredConns()) },
		Teardown:     &teardownErrs,
		ResolverSaid: resolver.about,
	}.Run(t, c)
	t.Logf("pg_xact_status questions asked by the resolver: %d", resolver.questions.Load())
}

// resolverTrace counts the resolver's questions (pg_xact_status),
// evidence that commits whose answer was lost were resolved, and keeps,
// by transaction id, how often it was asked about and the errors the
// server answered, to explain a wrong answer.
type resolverTrace struct {
	questions atomic.Int64
	mu        sync.Mutex
	asked     map[string]int
	errs      map[string][]string
}

type xidKey struct{}

func (r *resolverTrace) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	// The question is xact.StatusSQL, with the id first (and, since the
	// fix of dcebe73, when the transaction began).
	if d.SQL != xact.StatusSQL || len(d.Args) == 0 {
		return ctx
	}
	r.questions.Add(1)
	xid := fmt.Sprint(d.Args[0])
	r.mu.Lock()
	r.asked[xid]++
	r.mu.Unlock()
	return context.WithValue(ctx, xidKey{}, xid)
}

func (r *resolverTrace) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	xid, ok := ctx.Value(xidKey{}).(string)
	if !ok || d.Err == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.errs[xid]; len(e) == 0 || e[len(e)-1] != d.Err.Error() {
		r.errs[xid] = append(e, d.Err.Error())
	}
}

// about says what the resolver asked about xid and what failed.
func (r *resolverTrace) about(xid string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("the resolver asked about it %d times, failing with %q", r.asked[xid], r.errs[xid])
}
