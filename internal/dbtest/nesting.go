package dbtest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/go-scoped/scoped"
)

// A NestingCase is one way units of work nest: a root unit of work
// (scoped.Run) inserts 1, runs a child unit (scoped.Run inside it) that
// inserts 2, and ends as the flags say. An isolated test database stands
// in for the real pool, so the ids it leaves and how the root's Run ends
// must be the same on both: a difference is a test that passes isolated
// and fails in production, or the reverse.
type NestingCase struct {
	Name          string
	ChildFails    bool // the child returns an error (rolled back to its savepoint)
	ChildBadSQL   bool // a statement of the child fails (a duplicate key)
	RootFails     bool // the root returns an error after the child
	RootBadSQL    bool // a statement of the root fails (a duplicate key) before the child, and the root goes on
	TwoChildren   bool // a second child (inserting 3) commits after the first
	Grandchild    bool // the child runs a grandchild (inserting 4) that fails
	HandSavepoint bool // the root then makes a savepoint by hand (inserting 5) that rolls back: needs [NestingDB.HandSavepoint]
	// ChildFailsFirst: 2 is committed before the root begins; the root
	// writes nothing before the child, whose first statement (inserting 2)
	// fails, so that its savepoint is rolled back in a transaction that
	// has written nothing (issue 20 item 4); the root inserts 1 after it.
	ChildFailsFirst bool
}

// nestingCases is every case [CompareNesting] runs.
var nestingCases = []NestingCase{
	{Name: "both commit"},
	{Name: "child rolls back", ChildFails: true},
	{Name: "child statement fails", ChildBadSQL: true},
	{Name: "root rolls back a committed child", RootFails: true},
	{Name: "root statement failed", RootBadSQL: true},
	{Name: "two children, first rolls back", ChildFails: true, TwoChildren: true},
	{Name: "grandchild rolls back, child commits", Grandchild: true},
	{Name: "grandchild rolls back, child rolls back", Grandchild: true, ChildFails: true},
	{Name: "a savepoint by hand rolls back", HandSavepoint: true},
	{Name: "child's first statement fails before the root wrote", ChildFailsFirst: true},
}

// ErrNestingChild is what a failing child (or grandchild) unit of work
// in a [NestingCase] returns.
var ErrNestingChild = errors.New("dbtest: child unit of work failed")

// NestingDB is one database a nesting case runs on, the real pool or
// the isolated one, through one unit-of-work session: all a driver has
// to say, so that the cases and their comparison are written once for
// every driver.
type NestingDB struct {
	// Insert inserts id into table in the transaction of ctx's unit of
	// work, taken from the session.
	Insert func(ctx context.Context, table string, id int64) error
	// IDs returns the ids in table, ascending, as a fresh statement on
	// this database sees them.
	IDs func(t testing.TB, table string) []int64
	// HandSavepoint, if set, makes a savepoint on the transaction of
	// ctx's unit of work by hand (not through scoped), inserts id in it
	// and rolls it back, whatever the insert did. It returns an error
	// only when the unit's transaction cannot be had, and the root then
	// fails with it. Without it the cases that need it are skipped:
	// database/sql has no nested transactions to make one with.
	HandSavepoint func(ctx context.Context, table string, id int64) error
}

// Nesting is a driver's real pool and isolated database, compared by
// [CompareNesting].
type Nesting struct {
	// Isolated names the isolated database in messages ("IsolatedDB").
	Isolated string
	// TablePrefix starts the names of the case's tables.
	TablePrefix string
	// NewTable creates a fresh id table on the real pool named after
	// prefix, dropped when t ends.
	NewTable func(t *testing.T, prefix string) string
	// Real returns the real pool with a fresh session.
	Real func(t *testing.T) NestingDB
	// Isolate returns a fresh isolated database with a fresh session,
	// rolled back when t ends.
	Isolate func(t *testing.T) NestingDB
	// ErrorKind, if set, names what the root's error says beyond that
	// the root failed (such as pgx.ErrTxCommitRollback), "" for nothing
	// more; it must be the same on both.
	ErrorKind func(err error) string
}

// NestingOutcome is what a nesting case ends with.
type NestingOutcome struct {
	IDs       []int64 // committed, as a fresh statement sees them afterwards
	RootErr   bool    // the root's Run returned an error
	ErrorKind string  // [Nesting.ErrorKind] of that error
}

// CompareNesting runs every [NestingCase] on n's real pool and on a fresh
// isolated database, each case in a subtest and the isolated run in a
// subtest "isolated" of it, and fails t where the two end differently or
// the isolated database left a row behind on the real one after its
// rollback.
func CompareNesting(t *testing.T, n Nesting) {
	t.Helper()
	for _, c := range nestingCases {
		t.Run(c.Name, func(t *testing.T) {
			pool := n.Real(t)
			if c.HandSavepoint && pool.HandSavepoint == nil {
				t.Skipf("this driver makes no savepoint by hand (no nested transactions): the case runs for pgx only")
			}
			realTable := n.NewTable(t, n.TablePrefix+"_real")
			want := n.run(t, pool, realTable, c)

			isoTable := n.NewTable(t, n.TablePrefix+"_iso")
			var got NestingOutcome
			t.Run("isolated", func(t *testing.T) {
				got = n.run(t, n.Isolate(t), isoTable, c)
			})
			t.Logf("real pool: %+v; %s: %+v", want, n.Isolated, got)
			if !slices.Equal(got.IDs, want.IDs) || got.RootErr != want.RootErr || got.ErrorKind != want.ErrorKind {
				t.Errorf("%s: %+v; real pool: %+v", n.Isolated, got, want)
			}
			if left := pool.IDs(t, isoTable); len(left) != 0 {
				t.Errorf("%s left %v behind", n.Isolated, left)
			}
		})
	}
}

// run runs c on db and returns how it ended.
func (n Nesting) run(t *testing.T, db NestingDB, table string, c NestingCase) NestingOutcome {
	t.Helper()
	insert := func(ctx context.Context, id int64) error { return db.Insert(ctx, table, id) }
	if c.ChildFailsFirst {
		if err := scoped.Run(Ctx(t), func(ctx context.Context) error { return insert(ctx, 2) }); err != nil {
			t.Fatalf("commit 2 before the root: %v", err)
		}
	}
	err := scoped.Run(Ctx(t), func(ctx context.Context) error {
		if !c.ChildFailsFirst {
			if err := insert(ctx, 1); err != nil {
				return err
			}
		}
		if c.RootBadSQL {
			_ = insert(ctx, 1) // duplicate key: fails
		}
		_ = scoped.Run(ctx, func(ctx context.Context) error {
			if err := insert(ctx, 2); err != nil {
				return err
			}
			if c.ChildBadSQL {
				if err := insert(ctx, 2); err != nil {
					return err
				}
			}
			if c.Grandchild {
				_ = scoped.Run(ctx, func(ctx context.Context) error {
					if err := insert(ctx, 4); err != nil {
						return err
					}
					return ErrNestingChild
				})
			}
			if c.ChildFails {
				return ErrNestingChild
			}
			return nil
		})
		if c.ChildFailsFirst {
			if err := insert(ctx, 1); err != nil {
				return err
			}
		}
		if c.TwoChildren {
			if err := scoped.Run(ctx, func(ctx context.Context) error { return insert(ctx, 3) }); err != nil {
				return err
			}
		}
		if c.HandSavepoint {
			if err := db.HandSavepoint(ctx, table, 5); err != nil {
				return err
			}
		}
		if c.RootFails {
			return errors.New("root failed")
		}
		return nil
	})
	out := NestingOutcome{IDs: db.IDs(t, table), RootErr: err != nil}
	if n.ErrorKind != nil && err != nil {
		out.ErrorKind = n.ErrorKind(err)
	}
	return out
}
