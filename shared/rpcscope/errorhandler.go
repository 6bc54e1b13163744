package rpcscope

import (
	"context"
	"errors"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedsql"
)

// DefaultErrorHandler is the packages' DefaultErrorHandler: it turns a
// failed commit into the error the client gets, DeadlineExceeded when the
// call's deadline passed, Canceled when the client cancelled it, Aborted
// when the call may be run again (the WithRetry classifier accepted the
// cause, or scopedsql.Retryable does, and nothing was saved: see
// [scoped.MayRetry]), Internal otherwise. The message says what became of
// the changes and leaves the database's error out: the sessions'
// teardown error hook has logged it.
func (p *Package[C]) DefaultErrorHandler(ctx context.Context, err error) error {
	msg := p.Name + ": commit failed, the call's changes were not saved"
	switch {
	case errors.Is(err, scoped.ErrCommitUnknown):
		msg = p.Name + ": commit outcome unknown, the call's changes may have been saved"
	case errors.Is(err, scoped.ErrPartiallyCommitted) && errors.Is(err, p.EndedEarly):
		msg = p.Name + ": the call ended before its commit point, changes it had not committed were rolled back; part of the call's changes were saved, committed by hand"
	case errors.Is(err, scoped.ErrPartiallyCommitted):
		msg = p.Name + ": commit failed after part of the call's changes were saved"
	case errors.Is(err, p.EndedEarly):
		msg = p.Name + ": the call ended before its commit point, changes it had not committed were rolled back"
	}
	code := p.Internal
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		code = p.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = p.Canceled
	case errors.Is(err, errRetryable) || scoped.MayRetry(err, scopedsql.Retryable):
		code = p.Aborted
		msg = p.Name + ": commit failed on a serialization failure or deadlock, the call's changes were not saved; retry the call"
	}
	return p.NewError(code, msg)
}

// errRetryable is what a cause the WithRetry classifier accepted is (see
// [Config.fail]).
var errRetryable = errors.New("rpcscope: retryable")

// retryable marks a cause the WithRetry classifier accepted, leaving its
// message as it is for the user's error handler.
type retryable struct{ error }

func (r retryable) Unwrap() error        { return r.error }
func (r retryable) Is(target error) bool { return target == errRetryable }
