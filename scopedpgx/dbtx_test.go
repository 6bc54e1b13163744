package scopedpgx

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestDBTXServesTheScopesTransactionInsideAndThePoolOutside(t *testing.T) {
	pool := newPool(t, 4)
	table := newTable(t, pool, "pgx_dbtx")
	txs := NewTx(pool, pgx.TxOptions{})
	q := NewDBTX(pool, txs)
	outside := dbtest.Ctx(t)
	count := func(ctx context.Context) int {
		t.Helper()
		var n int
		if err := q.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	for _, tc := range []struct {
		name   string
		commit bool
	}{{"commit", true}, {"rollback", false}} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := pool.Exec(outside, "DELETE FROM "+table); err != nil {
				t.Fatal(err)
			}
			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			defer scope.Remove()
			// One statement through each method, all in the scope's transaction.
			if _, err := q.Exec(ctx, "INSERT INTO "+table+" (id) VALUES (1)"); err != nil {
				t.Fatal(err)
			}
			if !txs.Has(ctx) {
				t.Fatal("Exec ran without the scope's transaction")
			}
			b := &pgx.Batch{}
			b.Queue("INSERT INTO "+table+" (id) VALUES ($1)", 2)
			if err := q.SendBatch(ctx, b).Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := q.CopyFrom(ctx, pgx.Identifier{table[1 : len(table)-1]}, []string{"id"},
				pgx.CopyFromRows([][]any{{3}})); err != nil {
				t.Fatal(err)
			}
			rs, err := q.Query(ctx, "SELECT id FROM "+table+" ORDER BY id")
			if err != nil {
				t.Fatal(err)
			}
			inside, err := pgx.CollectRows(rs, pgx.RowTo[int])
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(inside, []int{1, 2, 3}) || count(ctx) != 3 {
				t.Fatalf("inside the scope: ids %v, count %d; want the transaction's own three rows", inside, count(ctx))
			}
			// Outside the scope, the pool: the uncommitted rows are not seen.
			if n := count(outside); n != 0 {
				t.Fatalf("outside the scope, count = %d: statements escaped the transaction", n)
			}
			end, want := scope.Remove, []int(nil)
			if tc.commit {
				end, want = scope.Commit, []int{1, 2, 3}
			}
			if err := end(); err != nil {
				t.Fatal(err)
			}
			if got := ids(t, pool, table); !slices.Equal(got, want) {
				t.Errorf("after the scope: ids %v, want %v", got, want)
			}
		})
	}
	// Outside any scope, each statement runs on the pool by itself.
	if _, err := pool.Exec(outside, "DELETE FROM "+table); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Exec(outside, "INSERT INTO "+table+" (id) VALUES (4)"); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, pool, table); !slices.Equal(got, []int{4}) {
		t.Errorf("ids %v, want [4]", got)
	}
	if st := txs.Stats(); st.Created != 2 {
		t.Errorf("%d transactions created, want 2 (one per scope, none outside)", st.Created)
	}
	if n := pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d connections still acquired", n)
	}
}

// spy is a Querier that counts the calls that reach it.
type spy struct {
	Querier
	calls atomic.Int32
}

func (s *spy) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	s.calls.Add(1)
	return s.Querier.Exec(ctx, sql, args...)
}

func (s *spy) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	s.calls.Add(1)
	return s.Querier.Query(ctx, sql, args...)
}

func (s *spy) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	s.calls.Add(1)
	return s.Querier.QueryRow(ctx, sql, args...)
}

func (s *spy) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	s.calls.Add(1)
	return s.Querier.SendBatch(ctx, b)
}

func (s *spy) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	s.calls.Add(1)
	return s.Querier.CopyFrom(ctx, table, columns, src)
}

// Inside a scope whose transaction cannot be had, no statement runs, not
// on the pool either, and every method says why: a pool that cannot give
// a connection (closed, or the scope's context ended while waiting), a
// scope that has ended.
func TestDBTXWithoutATransactionRunsNothing(t *testing.T) {
	admin := newPool(t, 1)
	table := newTable(t, admin, "pgx_dbtx_none")
	for _, tc := range []struct {
		name  string
		scope func(t *testing.T) (context.Context, *scoped.ScopedSession[pgx.Tx], *spy)
		want  error
	}{
		{"closed pool", func(t *testing.T) (context.Context, *scoped.ScopedSession[pgx.Tx], *spy) {
			pool := newPool(t, 1)
			pool.Close()
			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			t.Cleanup(func() { _ = scope.Remove() })
			return ctx, NewTx(pool, pgx.TxOptions{}), &spy{Querier: pool}
		}, nil},
		{"pool exhausted until the scope's context ended", func(t *testing.T) (context.Context, *scoped.ScopedSession[pgx.Tx], *spy) {
			pool := newPool(t, 1)
			held, err := pool.Acquire(dbtest.Ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(held.Release)
			cctx, cancel := context.WithCancel(dbtest.Ctx(t))
			cancel()
			ctx, scope := scoped.Begin(cctx)
			t.Cleanup(func() { _ = scope.Remove() })
			return ctx, NewTx(pool, pgx.TxOptions{}), &spy{Querier: admin}
		}, context.Canceled},
		{"scope ended", func(t *testing.T) (context.Context, *scoped.ScopedSession[pgx.Tx], *spy) {
			ctx, scope := scoped.Begin(dbtest.Ctx(t))
			if err := scope.Remove(); err != nil {
				t.Fatal(err)
			}
			return ctx, NewTx(admin, pgx.TxOptions{}), &spy{Querier: admin}
		}, scoped.ErrScopeClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, txs, fallback := tc.scope(t)
			q := NewDBTX(fallback, txs)
			insert := "INSERT INTO " + table + " (id) VALUES (1)"
			check := func(method string, err error) {
				t.Helper()
				if err == nil {
					t.Errorf("%s: no error", method)
					return
				}
				if tc.want != nil && !errors.Is(err, tc.want) {
					t.Errorf("%s: %v, want an error wrapping %v", method, err, tc.want)
				}
			}
			_, err := q.Exec(ctx, insert)
			check("Exec", err)
			rs, err := q.Query(ctx, insert)
			check("Query", err)
			check("Query's rows' Err", rs.Err())
			rs.Close()
			check("QueryRow's Scan", q.QueryRow(ctx, insert).Scan())
			b := &pgx.Batch{}
			b.Queue(insert)
			br := q.SendBatch(ctx, b)
			_, err = br.Exec()
			check("SendBatch's Exec", err)
			check("SendBatch's Close", br.Close())
			_, err = q.CopyFrom(ctx, pgx.Identifier{table[1 : len(table)-1]}, []string{"id"}, pgx.CopyFromRows([][]any{{1}}))
			check("CopyFrom", err)
			if n := fallback.calls.Load(); n != 0 {
				t.Errorf("%d calls fell back to the pool inside the scope", n)
			}
			if got := ids(t, admin, table); len(got) != 0 {
				t.Errorf("ids %v: a statement ran", got)
			}
		})
	}
}
