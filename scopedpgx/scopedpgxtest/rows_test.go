package scopedpgxtest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/go-scoped/scoped/internal/dbtest"
)

// runner is what the transcript runs on: a pool, a DB, a pgx.Tx of
// either.
type runner interface {
	querier
	execer
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

type kinds struct {
	N     *int64
	S     *string
	Empty string
	B     []byte
	J     map[string]any
	A     []int32
	Num   float64
}

// transcript runs the reads and batches whose results the isolated
// database buffers, and writes down everything pgx reports: values,
// errors, command tags, callbacks, in order. The table's name is written
// as T.
//
// Each section of it runs on r, or, if r is a transaction, in a savepoint
// of r rolled back at the section's end, so that a failing statement does
// not abort the sections after it.
func transcript(t *testing.T, top runner, table string) []string {
	t.Helper()
	ctx := dbtest.Ctx(t)
	var out []string
	say := func(format string, args ...any) {
		out = append(out, strings.ReplaceAll(fmt.Sprintf(format, args...), strings.Trim(table, `"`), "T"))
	}
	var r runner
	section := func() {
		if tx, ok := top.(pgx.Tx); ok {
			if sp, ok := r.(pgx.Tx); ok && sp != tx {
				say("section rollback: %v", sp.Rollback(ctx))
			}
			sp, err := tx.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r = sp
			return
		}
		r = top
	}
	section()
	const kindsSQL = `SELECT n, s, '' AS empty, b, j, a, num FROM (VALUES
		(1::int8, 'one'::text, '\x0102'::bytea, '{"k": [1, null]}'::jsonb, '{1,2}'::int4[], 1.5::numeric),
		(NULL, NULL, NULL, NULL, NULL, 2.25)) v(n, s, b, j, a, num)`

	rs, err := r.Query(ctx, kindsSQL)
	say("query: %v", err)
	for _, f := range rs.FieldDescriptions() {
		say("field %s oid %d format %d", f.Name, f.DataTypeOID, f.Format)
	}
	got, err := pgx.CollectRows(rs, pgx.RowToStructByName[kinds])
	for _, k := range got {
		say("struct %v %v %q %x %v %v %v", deref(k.N), deref(k.S), k.Empty, k.B, k.J, k.A, k.Num)
	}
	say("collect: %v, tag %q", err, rs.CommandTag())

	section()
	rs, _ = r.Query(ctx, kindsSQL)
	for rs.Next() {
		vs, err := rs.Values()
		say("values %#v %v, raw %d", vs, err, len(rs.RawValues()))
	}
	say("values end: %v", rs.Err())

	section()
	rs, err = r.Query(ctx, "SELECT 1/(2-g) FROM generate_series(1, 3) g")
	say("failing midway: %v", err)
	for rs.Next() {
		var n int
		say("row %v %d", rs.Scan(&n), n)
	}
	say("failing midway end: %v, tag %q", rs.Err(), rs.CommandTag())

	section()
	rs, err = r.Query(ctx, "SELEC 1")
	say("syntax error: %v; rows: %v", err, rs.Err())
	rs.Close()

	section()
	var n int
	say("no rows: %v", r.QueryRow(ctx, "SELECT 1 WHERE false").Scan(&n))
	say("wrong type: %v", r.QueryRow(ctx, "SELECT 'x'::text").Scan(&n))
	say("wrong count: %v", r.QueryRow(ctx, "SELECT 1, 2").Scan(&n))
	err = r.QueryRow(ctx, "INSERT INTO "+table+" (id) VALUES (1) RETURNING id").Scan(&n)
	say("returning: %v %d", err, n)
	say("duplicate returning: %v", r.QueryRow(ctx, "INSERT INTO "+table+" (id) VALUES (1) RETURNING id").Scan(&n))
	section()
	tag, err := r.Exec(ctx, "UPDATE "+table+" SET id = id")
	say("exec: %q %v", tag, err)
	rs, _ = r.Query(ctx, "DELETE FROM "+table+" WHERE id = 99")
	rs.Close()
	say("query tag: %q %v", rs.CommandTag(), rs.Err())
	tag, err = pgx.ForEachRow(mustQuery(r, ctx, "SELECT g FROM generate_series(1, 2) g"), []any{&n}, func() error {
		say("each %d", n)
		return nil
	})
	say("each: %q %v", tag, err)

	section()
	// A batch read through callbacks, then past its end.
	b := &pgx.Batch{}
	b.Queue("INSERT INTO " + table + " (id) VALUES (2)").Exec(func(ct pgconn.CommandTag) error {
		say("batch exec %q", ct)
		return nil
	})
	b.Queue("SELECT id FROM " + table + " ORDER BY id").Query(func(rows pgx.Rows) error {
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int])
		say("batch query %v %v", ids, err)
		return err
	})
	b.Queue("SELECT 7").QueryRow(func(row pgx.Row) error {
		err := row.Scan(&n)
		say("batch row %d %v", n, err)
		return err
	})
	br := r.SendBatch(ctx, b)
	say("batch close: %v", br.Close())
	_, err = br.Exec()
	say("batch exec after close: %v", err)

	section()
	// A batch read by hand, with a failure in the middle.
	b = &pgx.Batch{}
	b.Queue("INSERT INTO " + table + " (id) VALUES (3)")
	b.Queue("INSERT INTO " + table + " (id) VALUES (3)") // duplicate
	b.Queue("SELECT 1")
	br = r.SendBatch(ctx, b)
	for range 4 {
		tag, err := br.Exec()
		say("failing batch exec: %q %v", tag, err)
	}
	say("failing batch close: %v", br.Close())

	section()
	// A batch read by Query and QueryRow, then one result too many.
	b = &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SELECT 2")
	br = r.SendBatch(ctx, b)
	rs, err = br.Query()
	say("batch rows: %v", err)
	for rs.Next() {
		say("batch rows row %v", rs.Scan(&n))
	}
	rs.Close()
	say("batch rows end: %v %q", rs.Err(), rs.CommandTag())
	say("batch row: %v %d", br.QueryRow().Scan(&n), n)
	_, err = br.Exec()
	say("batch past the end: %v", err)
	say("batch close: %v", br.Close())

	section()
	b = &pgx.Batch{}
	b.Queue("SELEC 1")
	br = r.SendBatch(ctx, b)
	_, err = br.Exec()
	say("batch syntax error: %v; close: %v", err, br.Close())
	say("empty batch: %v", r.SendBatch(ctx, &pgx.Batch{}).Close())
	section()
	return out
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func mustQuery(r runner, ctx context.Context, sql string) pgx.Rows {
	rs, _ := r.Query(ctx, sql)
	return rs
}

// The isolated database buffers results, and hands them out as pgx hands
// out its own: the same values, errors, command tags and callbacks, on
// the pool's side and in a transaction.
func TestIsolatedResultsReadAsPgxReadsThem(t *testing.T) {
	pool := newPool(t, 4)
	realTable, isoTable := newTable(t, pool, "pgxtest_rows_real"), newTable(t, pool, "pgxtest_rows_iso")
	db := Isolate(t, pool)
	for _, inTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("in a transaction %v", inTx), func(t *testing.T) {
			var real, iso runner = pool, db
			if inTx {
				rtx, err := pool.Begin(dbtest.Ctx(t))
				if err != nil {
					t.Fatal(err)
				}
				defer rtx.Rollback(context.Background())
				real, iso = rtx, mustBegin(t, db)
			} else {
				for _, c := range []execer{pool, db} {
					for _, table := range []string{realTable, isoTable} {
						if _, err := c.Exec(dbtest.Ctx(t), "DELETE FROM "+table); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			want, got := transcript(t, real, realTable), transcript(t, iso, isoTable)
			if len(want) != len(got) {
				t.Errorf("%d lines on the real pool, %d isolated", len(want), len(got))
			}
			for i := range max(len(want), len(got)) {
				w, g := line(want, i), line(got, i)
				if w != g {
					t.Errorf("line %d:\nreal pool: %s\nisolated:  %s", i, w, g)
				} else {
					t.Log(w)
				}
			}
		})
	}
}

func line(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return "(none)"
}
