package scopedpgx

import (
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// rows are pgx.Rows whose calls go through the transaction's guard, since
// reading rows reads the connection. After the transaction has ended they
// report its end and never touch the connection again.
type rows struct {
	g   *guard
	r   pgx.Rows // nil if the query was refused
	err error    // why the query was refused or a call failed the guard
}

var _ pgx.Rows = (*rows)(nil)

// enter is the guard for one call; it records a refusal as the rows' error.
func (r *rows) enter() bool {
	if r.r == nil || r.err != nil {
		return false
	}
	if err := r.g.enter(); err != nil {
		r.err = err
		return false
	}
	return true
}

func (r *rows) Close() {
	if r.enter() {
		r.r.Close()
		r.g.leave()
	}
}

func (r *rows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.r.Err()
}

func (r *rows) CommandTag() pgconn.CommandTag {
	if r.r == nil {
		return pgconn.CommandTag{}
	}
	return r.r.CommandTag()
}

func (r *rows) FieldDescriptions() []pgconn.FieldDescription {
	if r.r == nil {
		return nil
	}
	return r.r.FieldDescriptions()
}

func (r *rows) Next() bool {
	if !r.enter() {
		return false
	}
	defer r.g.leave()
	return r.r.Next()
}

func (r *rows) Scan(dest ...any) error {
	if !r.enter() {
		return r.err
	}
	defer r.g.leave()
	return r.r.Scan(dest...)
}

func (r *rows) Values() ([]any, error) {
	if !r.enter() {
		return nil, r.err
	}
	defer r.g.leave()
	return r.r.Values()
}

func (r *rows) RawValues() [][]byte {
	if !r.enter() {
		return nil
	}
	defer r.g.leave()
	return r.r.RawValues()
}

func (r *rows) Conn() *pgx.Conn {
	if r.r == nil {
		return nil
	}
	return r.r.Conn()
}

// row is QueryRow's result, scanned through the guard.
type row struct {
	g   *guard
	r   pgx.Row // nil if the query was refused
	err error
}

func (r *row) Scan(dest ...any) error {
	if r.r == nil {
		return r.err
	}
	if err := r.g.enter(); err != nil {
		return err
	}
	defer r.g.leave()
	return r.r.Scan(dest...)
}

// batchRows are the rows of a statement sent in a pipeline with BEGIN or
// the read of the transaction's id: when they end, the rest of the
// pipeline is read, as pgx reads the end of its own statement.
type batchRows struct {
	pgx.Rows
	t     *tx
	br    pgx.BatchResults
	piggy bool // the transaction's id follows the rows
	done  bool
	// again, set for the first statement on a replica, runs it again on
	// the primary if the replica was lost before its first row; nil if
	// it was not lost (see tx.queryAgain).
	again func(err error) pgx.Rows
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		r.again = nil
		return true
	}
	r.end()
	if again := r.again; again != nil && r.Rows.Err() != nil {
		r.again = nil
		if nr := again(r.Rows.Err()); nr != nil {
			r.Rows = nr // its pipeline is its own; this one has ended
			return nr.Next()
		}
	}
	return false
}

func (r *batchRows) Close() {
	r.Rows.Close()
	r.end()
}

func (r *batchRows) end() {
	if r.done {
		return
	}
	r.done = true
	r.t.finish(r.br, r.piggy && r.Rows.Err() == nil)
}

// firstRow is QueryRow's result from Query's rows, scanned as pgx scans
// its own: the first row, then the rows closed.
type firstRow struct{ rows pgx.Rows }

func (r firstRow) Scan(dest ...any) error {
	rows := r.rows
	if err := rows.Err(); err != nil {
		rows.Close()
		return err
	}
	for _, d := range dest {
		if _, ok := d.(*pgtype.DriverBytes); ok {
			rows.Close()
			return errors.New("cannot scan into *pgtype.DriverBytes from QueryRow")
		}
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	_ = rows.Scan(dest...) // its error is the rows'
	rows.Close()
	return rows.Err()
}
