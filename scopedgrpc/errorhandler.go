package scopedgrpc

import "context"

// DefaultErrorHandler turns a failed commit into the status the client
// gets: DeadlineExceeded when the call's deadline passed, Canceled when
// the client cancelled it, Aborted when the call may be retried (a
// serialization failure or a deadlock, as scopedsql.Retryable or the
// [WithRetry] classifier recognises, and nothing was saved; the client
// may retry the call), Internal otherwise. The message says what became
// of the changes (not saved, partly saved, or perhaps saved when the
// outcome is unknown) and leaves the database's error out: the sessions'
// teardown error hook has logged it.
func DefaultErrorHandler(ctx context.Context, err error) error {
	return pkg.DefaultErrorHandler(ctx, err)
}
