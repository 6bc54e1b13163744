package scopedpgxtest

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// batch is SendBatch's results, read to the end before SendBatch
// returned, as rows are, and handed out as pgx hands out its own: Exec,
// Query and QueryRow take the next result; Close runs the callbacks
// (QueuedQuery.Exec, Query, QueryRow) of the results not taken yet.
type batch struct {
	b       *pgx.Batch
	results []*rows
	direct  []error // what pgx's Query returned for each result itself
	end     error   // what pgx's Close returned
	n       int     // results taken
	err     error   // the first error of a taken Exec or of a callback; sticky, as pgx's
	closed  bool
}

var _ pgx.BatchResults = (*batch)(nil)

// failedBatch is the result of a batch that was not sent.
func failedBatch(err error) *batch { return &batch{err: err, end: err} }

// sendBatch sends b and reads all its results, with the turn held.
func (d *DB) sendBatch(ctx context.Context, b *pgx.Batch) *batch {
	br := d.c.SendBatch(ctx, b)
	out := &batch{b: b}
	for range b.QueuedQueries {
		rs, err := br.Query()
		if err != nil { // pgx's rows then have nothing to read, not even fields
			out.results = append(out.results, failedRows(err))
		} else {
			out.results = append(out.results, d.read(rs))
		}
		out.direct = append(out.direct, err)
	}
	out.end = br.Close()
	return out
}

// failed returns the batch's first error, if any.
func (b *batch) failed() error {
	for i, r := range b.results {
		if err := both(b.direct[i], r.err); err != nil {
			return err
		}
	}
	return b.end
}

// withCause adds ctx's end to the batch's errors, as [cause] does.
func (b *batch) withCause(ctx context.Context) *batch {
	for i, r := range b.results {
		b.direct[i], r.err = cause(ctx, b.direct[i]), cause(ctx, r.err)
	}
	b.end = cause(ctx, b.end)
	return b
}

// next takes the next result.
func (b *batch) next() (*rows, error) {
	switch {
	case b.err != nil:
		return failedRows(b.err), b.err
	case b.closed:
		err := errors.New("batch already closed")
		return failedRows(err), err
	case b.n >= len(b.results):
		err := b.end
		if err == nil {
			err = errors.New("no more results in batch")
		}
		return failedRows(err), err
	}
	b.n++
	return b.results[b.n-1], b.direct[b.n-1]
}

func (b *batch) Exec() (pgconn.CommandTag, error) {
	taken := b.n
	r, err := b.next()
	if b.n == taken { // no result: an error that is not sticky, as in pgx
		return pgconn.CommandTag{}, err
	}
	if err == nil {
		r.Close()
		err = r.Err()
	}
	if err != nil && b.err == nil {
		b.err = err
	}
	return r.tag, err
}

func (b *batch) Query() (pgx.Rows, error) { return b.next() }

func (b *batch) QueryRow() pgx.Row {
	r, _ := b.next()
	return row{r}
}

func (b *batch) Close() error {
	if b.closed {
		return b.err
	}
	for b.err == nil && b.b != nil && b.n < len(b.b.QueuedQueries) {
		if fn := b.b.QueuedQueries[b.n].Fn; fn != nil {
			if err := fn(b); err != nil {
				b.err = err
			}
		} else {
			_, _ = b.Exec()
		}
	}
	b.closed = true
	if b.err == nil {
		b.err = b.end
	}
	return b.err
}
