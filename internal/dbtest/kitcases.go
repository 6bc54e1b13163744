package dbtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/go-scoped/scoped"
)

// KitDB is one database a kit case runs on, the real pool or an isolated
// one, with a fresh session of the kit's driver.
type KitDB[T any] struct {
	// Txs is the session whose transactions the units of work write through.
	Txs *scoped.ScopedSession[T]
	// Exec runs a statement on the database itself, outside any unit of work.
	Exec func(ctx context.Context, query string, args ...any) error
	// IDs returns the ids in table, ascending, as a fresh statement on
	// this database sees them.
	IDs func(t testing.TB, table string) []int64
	// InUse returns how many connections the database holds on the
	// server: none once an isolated database's test has ended.
	InUse func() int
}

// KitDriver is all a test kit's driver has to say for the kit cases,
// which are written once for scopedtest.IsolatedDB (database/sql) and
// scopedpgxtest.Isolate (pgx), whose transactions are T.
type KitDriver[T any] interface {
	// Real returns the real pool with a fresh session.
	Real() KitDB[T]
	// Isolate returns a fresh isolated database of t's test with a fresh
	// session, rolled back when t ends.
	Isolate(t testing.TB) KitDB[T]
	// NewTable creates a fresh id table on the real pool, dropped when t
	// ends; with commitFailures, one whose COMMIT fails with 40001 after
	// a negative id (see [CreateCommitFailureTable]).
	NewTable(t *testing.T, prefix string, commitFailures bool) string
	// Exec runs a statement on the transaction tx.
	Exec(ctx context.Context, tx T, query string, args ...any) error
	// Retryable is the driver's retry predicate, such as scopedsql.Retryable.
	Retryable(err error) bool
}

// KitCases are the kit cases of Driver on Server: what a service's test
// does with an isolated database, which must end as on the real pool.
type KitCases[T any] struct {
	Server Server
	Driver KitDriver[T]
}

// kitEnv is one run of a kit case and what it recorded.
type kitEnv struct {
	kitOps
	retry scoped.RunOption // WithRetry(3) on the driver's Retryable
	runs  int
	mu    sync.Mutex
	hooks []string
}

// kitOps are the statements of a kit case, on one database and table.
type kitOps interface {
	insert(ctx context.Context, id int64) error // in ctx's unit of work
	insertOutside(ctx context.Context, id int64) error
	commit(ctx context.Context) error // by hand
	// serializationFailure fails the unit's transaction with a retryable
	// error, as a conflicting transaction would make it fail.
	serializationFailure(ctx context.Context) error
}

type kitOn[T any] struct {
	k     KitCases[T]
	db    KitDB[T]
	table string
}

func (o kitOn[T]) insert(ctx context.Context, id int64) error {
	tx, err := o.db.Txs.Current(ctx)
	if err != nil {
		return err
	}
	return o.k.Driver.Exec(ctx, tx, o.k.Server.InsertID(o.table), id)
}

func (o kitOn[T]) insertOutside(ctx context.Context, id int64) error {
	return o.db.Exec(ctx, o.k.Server.InsertID(o.table), id)
}

func (o kitOn[T]) commit(ctx context.Context) error { return o.db.Txs.Commit(ctx) }

func (o kitOn[T]) serializationFailure(ctx context.Context) error {
	tx, err := o.db.Txs.Current(ctx)
	if err != nil {
		return err
	}
	q := "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$"
	if o.k.Server.Name == "mysql" {
		q = "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'conflict'"
	}
	return o.k.Driver.Exec(ctx, tx, q)
}

func (k KitCases[T]) env(db KitDB[T], table string) *kitEnv {
	return &kitEnv{kitOps: kitOn[T]{k, db, table}, retry: scoped.WithRetry(3, k.Driver.Retryable)}
}

// hook records OnCommit and OnRollback of ctx's unit under name.
func (e *kitEnv) hook(ctx context.Context, name string) {
	add := func(s string) func(context.Context) {
		return func(context.Context) { e.mu.Lock(); e.hooks = append(e.hooks, s); e.mu.Unlock() }
	}
	_ = scoped.OnCommit(ctx, add(name+":commit"))
	_ = scoped.OnRollback(ctx, add(name+":rollback"))
}

type kitOutcome struct {
	IDs   []int64
	Err   string // kind of the root's error
	Runs  int
	Hooks []string
}

// CompareWithTheRealPool runs every kit case on the real pool and on a
// fresh isolated database, each case in a subtest and the isolated run in
// a subtest "isolated" of it, and fails t where the two end differently
// or the isolated database left a row behind.
func (k KitCases[T]) CompareWithTheRealPool(t *testing.T) {
	for _, c := range kitCases {
		t.Run(c.name, func(t *testing.T) {
			if c.pgOnly && k.Server.Name != "postgres" {
				t.Skip("PostgreSQL only")
			}
			run := func(t *testing.T, db KitDB[T], table string) kitOutcome {
				e := k.env(db, table)
				err := c.run(Ctx(t), e)
				hooks := slices.Clone(e.hooks)
				slices.Sort(hooks)
				return kitOutcome{IDs: db.IDs(t, table), Err: k.errKind(err), Runs: e.runs, Hooks: hooks}
			}
			// Both before the isolated run, so that its rollback comes before the drop.
			realTable := k.Driver.NewTable(t, "kit_real", c.failures)
			isoTable := k.Driver.NewTable(t, "kit_iso", c.failures)
			real := k.Driver.Real()
			want := run(t, real, realTable)
			var got kitOutcome
			t.Run("isolated", func(t *testing.T) {
				got = run(t, k.Driver.Isolate(t), isoTable)
			})
			t.Logf("real pool %+v", want)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("isolated %+v, real pool %+v", got, want)
			}
			if left := real.IDs(t, isoTable); len(left) != 0 {
				t.Errorf("the isolated database left %v behind", left)
			}
		})
	}
}

func (k KitCases[T]) errKind(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, scoped.ErrPartiallyCommitted):
		return "ErrPartiallyCommitted"
	case errors.Is(err, scoped.ErrNotCommitted):
		return "ErrNotCommitted"
	case k.Driver.Retryable(err):
		return "retryable"
	}
	return "error"
}
