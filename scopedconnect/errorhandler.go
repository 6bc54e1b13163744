package scopedconnect

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedsql"
)

// DefaultErrorHandler turns a failed commit into the [*connect.Error] that
// the client gets, whichever protocol it speaks: CodeDeadlineExceeded when
// the call's deadline passed, CodeCanceled when the client cancelled it,
// CodeAborted for a serialization failure or a deadlock (see
// [IsSerializationFailure]; the client may retry the call), CodeInternal
// otherwise. The message says what became of the changes (not saved,
// partly saved, or perhaps saved when the outcome is unknown) and leaves
// the database's error out: the sessions' teardown error hook has logged
// it.
func DefaultErrorHandler(ctx context.Context, err error) error {
	msg := "scopedconnect: commit failed, the call's changes were not saved"
	switch {
	case errors.Is(err, scoped.ErrCommitUnknown):
		msg = "scopedconnect: commit outcome unknown, the call's changes may have been saved"
	case errors.Is(err, scoped.ErrPartiallyCommitted):
		msg = "scopedconnect: commit failed after part of the call's changes were saved"
	case errors.Is(err, errEndedEarly):
		msg = "scopedconnect: the call ended before its commit point, changes it had not committed were rolled back"
	}
	code := connect.CodeInternal
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		code = connect.CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = connect.CodeCanceled
	case scoped.MayRetry(err, IsSerializationFailure):
		code = connect.CodeAborted
		msg = "scopedconnect: commit failed on a serialization failure or deadlock, the call's changes were not saved; retry the call"
	}
	return connect.NewError(code, errors.New(msg))
}

// errEndedEarly marks the error of a call whose context ended before the
// commit point: its changes were rolled back, not committed.
var errEndedEarly = errors.New("scopedconnect: call ended before the commit point, changes rolled back")

// IsSerializationFailure reports whether err, or an error it wraps, is a
// database's serialization failure or deadlock, the failures that a retry
// of the whole transaction can cure: it is [scopedsql.Retryable] (SQLSTATE
// 40001 or 40P01 from pgx and lib/pq, MySQL's error 1213, recognised
// without importing a driver), the classifier the default error handler
// maps to Aborted.
func IsSerializationFailure(err error) bool { return scopedsql.Retryable(err) }
