package scopedconnect

import (
	"connectrpc.com/connect"

	"github.com/go-scoped/scoped/shared/rpcscope"
)

// A CommitMode says when the interceptor commits a call's scope.
type CommitMode int

const (
	// Manual commits nothing: the handler commits what it wants (with
	// [scoped.Scope.Commit] or [scoped.ScopedSession.Commit]) and the rest
	// is rolled back when it returns. The default.
	Manual CommitMode = iota
	// Autocommit commits when the handler returns no error, before the
	// response (unary) or the end of the stream is sent, and rolls back
	// otherwise.
	Autocommit
)

// String returns the mode's name.
func (m CommitMode) String() string { return rpcscope.Mode(m).String() }

// OK is the code a commit policy sees for a handler that returned no
// error. Connect has no code for success; 0 is not one of its error codes.
const OK connect.Code = 0
