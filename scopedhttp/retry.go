package scopedhttp

import (
	"fmt"
	"io"
	"net/http"
)

// DefaultRetryBodyLimit is the default of [WithRetryBodyLimit]: 1 MiB,
// the size of the largest response the middleware holds by default. A
// request body that size or smaller costs at most that much memory while
// its request runs.
const DefaultRetryBodyLimit = 1 << 20

// WithRetry runs a request again, in a fresh scope, when its unit of work
// failed with an error retryable accepts and nothing of it was saved (see
// [scoped.MayRetry]): when its commit failed that way (PostgreSQL reports
// many serialization failures at COMMIT), or when a unit inside it (a
// [scoped.Run] with [scoped.WithRetry], such as a service function the
// handler called) failed that way and asked its root to run again (see
// [scoped.Scope.RetryRequested]), even if the handler swallowed that
// error and answered it. scopedsql.Retryable and scopedpgx.Retryable are
// the classifiers for serialization failures and deadlocks.
//
// It runs the request at most maxAttempts times in all, with a jittered
// exponential pause between runs, within the request's context (and
// [WithTimeout]): the failed run's held response is discarded, its
// headers undone, and the request body the handler read is replayed.
// A request is not run again:
//   - after anything of its response left the server (a flush, a hijack,
//     a body past [WithBufferLimit]; a 1xx does not count);
//   - when the handler read more of the request body than
//     [WithRetryBodyLimit] (the body is recorded as the handler reads it,
//     never read ahead);
//   - when the handler ended the scope itself (it may have committed);
//   - after a commit that saved something, or may have;
//   - after the handler committed a session by hand with
//     [scoped.ScopedSession.Commit]: that part is saved (a commit of the
//     rest that fails then says [scoped.ErrPartiallyCommitted]).
//
// The handler must be safe to run again otherwise: what it did outside
// the database (a mail, a call to a service) is not undone.
//
// When the last run fails at its commit with a retryable error, or with
// maxAttempts 1, [DefaultErrorHandler] answers 503 with Retry-After.
// WithRetry needs an automatic commit mode: the middleware must hold the
// response to discard it. [Middleware] panics in [Manual] mode.
func WithRetry(maxAttempts int, retryable func(error) bool) Option {
	if maxAttempts < 1 {
		panic(fmt.Sprintf("scopedhttp: WithRetry(%d, ...): maxAttempts must be at least 1", maxAttempts))
	}
	if retryable == nil {
		panic("scopedhttp: WithRetry with nil retryable")
	}
	return optionFunc(func(c *config) { c.attempts, c.retryable = maxAttempts, retryable })
}

// WithRetryBodyLimit sets how many bytes of a request body [WithRetry]
// keeps to replay (default [DefaultRetryBodyLimit]). A handler that reads
// more is not run again.
func WithRetryBodyLimit(n int) Option {
	if n < 0 {
		panic(fmt.Sprintf("scopedhttp: WithRetryBodyLimit(%d): the limit cannot be negative", n))
	}
	return optionFunc(func(c *config) { c.bodyLimit = n })
}

// retrier is one request's state across its runs under WithRetry.
type retrier struct {
	attempt int // the run under way, from 1
	body    *replay
}

// again reports whether the run under way may be followed by another.
func (rt *retrier) again(c *config) bool {
	return rt != nil && rt.attempt < c.attempts && (rt.body == nil || !rt.body.spoilt)
}

// replay records the request body as the handler reads it, up to limit,
// so that the next run reads the same bytes and then the rest.
type replay struct {
	src    io.ReadCloser
	buf    []byte
	limit  int
	eof    bool
	spoilt bool // read past limit, or src failed: not replayable
}

// reader returns the body for the next run.
func (b *replay) reader() io.ReadCloser { return &replayReader{b: b} }

type replayReader struct {
	b      *replay
	off    int
	closed bool
}

func (r *replayReader) Read(p []byte) (int, error) {
	b := r.b
	if r.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if r.off < len(b.buf) {
		n := copy(p, b.buf[r.off:])
		r.off += n
		return n, nil
	}
	if b.eof {
		return 0, io.EOF
	}
	n, err := b.src.Read(p)
	if n > 0 && !b.spoilt {
		if len(b.buf)+n <= b.limit {
			b.buf = append(b.buf, p[:n]...)
			r.off += n
		} else {
			b.spoilt, b.buf = true, nil
		}
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.spoilt = true
	}
	return n, err
}

// Close ends this run's reading; the request's body is the server's to
// close, after the last run.
func (r *replayReader) Close() error {
	r.closed = true
	return nil
}
