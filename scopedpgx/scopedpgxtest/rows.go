package scopedpgxtest

import (
	"bytes"
	"context"
	"errors"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// rows are a query's results, read to the end before the query returned,
// so that iterating over them never holds the connection: a loop that
// runs a statement per row works as it does on a pool. They decode with
// the connection's type map (and the types the pool registered on it),
// taking the connection's turn to do so, since a pgtype.Map is not safe
// for concurrent use.
type rows struct {
	d      *DB
	fields []pgconn.FieldDescription
	values [][][]byte
	tag    pgconn.CommandTag
	err    error // the query's error, reported once the rows have been read
	n      int   // values[n-1] is the current row
	closed bool
}

var _ pgx.Rows = (*rows)(nil)

// failedRows are the rows of a query that did not run.
func failedRows(err error) *rows { return &rows{err: err, closed: true} }

// collect runs a query and reads all its rows, with the turn held. err is
// the error pgx returned from Query itself; later errors are the rows'.
func (d *DB) collect(ctx context.Context, sql string, args []any) (r *rows, err error) {
	rs, err := d.c.Query(ctx, sql, args...)
	if err != nil {
		rs.Close()
		return failedRows(err), err
	}
	return d.read(rs), nil
}

// read reads rs to the end, keeping copies of its values (pgx reuses its
// buffers).
func (d *DB) read(rs pgx.Rows) *rows {
	r := &rows{d: d, fields: slices.Clone(rs.FieldDescriptions())}
	for rs.Next() {
		raw := rs.RawValues()
		row := make([][]byte, len(raw))
		for i, v := range raw {
			row[i] = bytes.Clone(v) // nil (NULL) stays nil
		}
		r.values = append(r.values, row)
	}
	rs.Close()
	r.err, r.tag = rs.Err(), rs.CommandTag()
	return r
}

func (r *rows) Close() { r.closed = true }

func (r *rows) Err() error {
	if !r.closed {
		return nil // as pgx: the error comes after the rows before it
	}
	return r.err
}

func (r *rows) CommandTag() pgconn.CommandTag { return r.tag }

func (r *rows) FieldDescriptions() []pgconn.FieldDescription { return r.fields }

func (r *rows) Next() bool {
	if r.closed {
		return false
	}
	if r.n < len(r.values) {
		r.n++
		return true
	}
	r.closed = true
	return false
}

// current is the row Next moved to, or nil.
func (r *rows) current() [][]byte {
	if r.closed || r.n == 0 {
		return nil
	}
	return r.values[r.n-1]
}

// fatal ends the rows with err, as pgx does after a failed Scan.
func (r *rows) fatal(err error) {
	r.err = err
	r.closed = true
}

func (r *rows) Scan(dest ...any) error {
	if len(dest) == 1 {
		if rs, ok := dest[0].(pgx.RowScanner); ok {
			err := rs.ScanRow(r) // scans back through r.Scan
			if err != nil {
				r.fatal(err)
			}
			return err
		}
	}
	if r.d == nil { // the query did not run
		return r.err
	}
	values := r.current()
	if err := r.d.take(context.Background()); err != nil {
		return err
	}
	err := pgx.ScanRow(r.d.c.TypeMap(), r.fields, values, dest...)
	r.d.give()
	if err != nil {
		r.fatal(err)
	}
	return err
}

func (r *rows) Values() ([]any, error) {
	if r.closed {
		return nil, errors.New("rows is closed")
	}
	if r.d == nil {
		return nil, r.err
	}
	if err := r.d.take(context.Background()); err != nil {
		return nil, err
	}
	defer r.d.give()
	m := r.d.c.TypeMap()
	values := make([]any, 0, len(r.fields))
	for i, buf := range r.current() {
		fd := &r.fields[i]
		switch dt, ok := m.TypeForOID(fd.DataTypeOID); {
		case buf == nil:
			values = append(values, nil)
		case ok:
			v, err := dt.Codec.DecodeValue(m, fd.DataTypeOID, fd.Format, buf)
			if err != nil {
				r.fatal(err)
				return nil, err
			}
			values = append(values, v)
		case fd.Format == pgtype.TextFormatCode:
			values = append(values, string(buf))
		default:
			values = append(values, bytes.Clone(buf))
		}
	}
	return values, nil
}

func (r *rows) RawValues() [][]byte { return r.current() }

// Conn returns the test's connection, as pgx returns the rows'. Calls on
// it bypass the turns.
func (r *rows) Conn() *pgx.Conn {
	if r.d == nil {
		return nil
	}
	return r.d.c
}

// row is QueryRow's result, scanned as pgx scans its own: the first row,
// then the rows closed.
type row struct{ r *rows }

func (w row) Scan(dest ...any) error {
	r := w.r
	if err := r.Err(); err != nil {
		return err
	}
	for _, d := range dest {
		if _, ok := d.(*pgtype.DriverBytes); ok {
			r.Close()
			return errors.New("cannot scan into *pgtype.DriverBytes from QueryRow")
		}
	}
	if !r.Next() {
		if err := r.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	_ = r.Scan(dest...) // its error is the rows'
	r.Close()
	return r.Err()
}
