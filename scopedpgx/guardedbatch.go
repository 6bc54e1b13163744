package scopedpgx

import (
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// batch is SendBatch's result, read through the guard.
type batch struct {
	g  *guard
	br pgx.BatchResults
}

func (b *batch) Exec() (pgconn.CommandTag, error) {
	if err := b.g.enter(); err != nil {
		return pgconn.CommandTag{}, err
	}
	defer b.g.leave()
	return b.br.Exec()
}

func (b *batch) Query() (pgx.Rows, error) {
	if err := b.g.enter(); err != nil {
		return &rows{err: err}, err
	}
	defer b.g.leave()
	r, err := b.br.Query()
	return &rows{g: b.g, r: r}, err
}

func (b *batch) QueryRow() pgx.Row {
	if err := b.g.enter(); err != nil {
		return &row{err: err}
	}
	defer b.g.leave()
	return &row{g: b.g, r: b.br.QueryRow()}
}

func (b *batch) Close() error {
	if err := b.g.enter(); err != nil {
		return err
	}
	defer b.g.leave()
	return b.br.Close()
}

// failedBatch is the result of a batch the guard refused.
type failedBatch struct{ err error }

func (f failedBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, f.err }
func (f failedBatch) Query() (pgx.Rows, error)         { return &rows{err: f.err}, f.err }
func (f failedBatch) QueryRow() pgx.Row                { return &row{err: f.err} }
func (f failedBatch) Close() error                     { return f.err }
