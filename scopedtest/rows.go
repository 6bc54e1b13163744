package scopedtest

import (
	"bytes"
	"database/sql/driver"
	"io"
	"reflect"
)

// rows is a result read to the end while the connection was locked, so
// that the lock is released before the caller sees the first row. Holding
// it while the caller iterates would deadlock the common loop that runs a
// statement per row, and the one connection could not run that statement
// anyway while a result is still streaming on it.
type rows struct {
	sets     []resultSet
	set, row int
	closeErr error
}

type resultSet struct {
	cols  []string
	types []columnType
	rows  [][]driver.Value
	err   error // what ended the set early, delivered after its rows
}

// columnType holds what the driver's optional column interfaces said;
// database/sql's defaults where it has none.
type columnType struct {
	scanType              reflect.Type
	dbType                string
	length                int64
	hasLength             bool
	nullable, hasNullable bool
	precision, scale      int64
	hasPrecisionScale     bool
}

// readAll reads every row of every result set of r, then closes it.
func readAll(r driver.Rows) *rows {
	b := &rows{}
	for {
		set := readSet(r)
		b.sets = append(b.sets, set)
		if set.err != nil {
			break
		}
		next, ok := r.(driver.RowsNextResultSet)
		if !ok || !next.HasNextResultSet() {
			break
		}
		if err := next.NextResultSet(); err != nil {
			if err != io.EOF {
				b.sets[len(b.sets)-1].err = err
			}
			break
		}
	}
	b.closeErr = r.Close()
	return b
}

func readSet(r driver.Rows) resultSet {
	set := resultSet{cols: r.Columns()}
	set.types = make([]columnType, len(set.cols))
	for i := range set.types {
		set.types[i] = describe(r, i)
	}
	for {
		dest := make([]driver.Value, len(set.cols))
		if err := r.Next(dest); err != nil {
			if err != io.EOF {
				set.err = err
			}
			return set
		}
		for i, v := range dest {
			if b, ok := v.([]byte); ok {
				dest[i] = bytes.Clone(b) // drivers reuse their buffers
			}
		}
		set.rows = append(set.rows, dest)
	}
}

func describe(r driver.Rows, i int) columnType {
	t := columnType{scanType: reflect.TypeFor[any]()}
	if v, ok := r.(driver.RowsColumnTypeScanType); ok {
		t.scanType = v.ColumnTypeScanType(i)
	}
	if v, ok := r.(driver.RowsColumnTypeDatabaseTypeName); ok {
		t.dbType = v.ColumnTypeDatabaseTypeName(i)
	}
	if v, ok := r.(driver.RowsColumnTypeLength); ok {
		t.length, t.hasLength = v.ColumnTypeLength(i)
	}
	if v, ok := r.(driver.RowsColumnTypeNullable); ok {
		t.nullable, t.hasNullable = v.ColumnTypeNullable(i)
	}
	if v, ok := r.(driver.RowsColumnTypePrecisionScale); ok {
		t.precision, t.scale, t.hasPrecisionScale = v.ColumnTypePrecisionScale(i)
	}
	return t
}

func (b *rows) current() *resultSet { return &b.sets[b.set] }

func (b *rows) Columns() []string { return b.current().cols }

func (b *rows) Close() error { return b.closeErr }

func (b *rows) Next(dest []driver.Value) error {
	s := b.current()
	if b.row < len(s.rows) {
		copy(dest, s.rows[b.row])
		b.row++
		return nil
	}
	if s.err != nil {
		return s.err
	}
	return io.EOF
}

func (b *rows) HasNextResultSet() bool { return b.set < len(b.sets)-1 }

func (b *rows) NextResultSet() error {
	if !b.HasNextResultSet() {
		return io.EOF
	}
	b.set++
	b.row = 0
	return nil
}

func (b *rows) ColumnTypeScanType(i int) reflect.Type   { return b.current().types[i].scanType }
func (b *rows) ColumnTypeDatabaseTypeName(i int) string { return b.current().types[i].dbType }
func (b *rows) ColumnTypeLength(i int) (int64, bool) {
	t := b.current().types[i]
	return t.length, t.hasLength
}
func (b *rows) ColumnTypeNullable(i int) (nullable, ok bool) {
	t := b.current().types[i]
	return t.nullable, t.hasNullable
}

func (b *rows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	t := b.current().types[i]
	return t.precision, t.scale, t.hasPrecisionScale
}

// failed returns the first error met while reading, if any.
func (b *rows) failed() error {
	for _, s := range b.sets {
		if s.err != nil {
			return s.err
		}
	}
	return b.closeErr
}
