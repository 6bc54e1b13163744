package scopedpgx

import (
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
