package scopedconnect

import "context"

// DefaultErrorHandler turns a failed commit into the [*connect.Error] that
// the client gets, whichever protocol it speaks: CodeDeadlineExceeded when
// the call's deadline passed, CodeCanceled when the client cancelled it,
// CodeAborted when nothing was saved and the commit failed with an error
// the [WithRetry] classifier accepts, or scopedsql.Retryable does (a
// serialization failure or a deadlock; the client may retry the call),
// CodeInternal otherwise. The message says what became of the changes
// (not saved, partly saved, or perhaps saved when the outcome is unknown)
// and leaves the database's error out: the sessions' teardown error hook
// has logged it.
func DefaultErrorHandler(ctx context.Context, err error) error {
	return pkg.DefaultErrorHandler(ctx, err)
}
