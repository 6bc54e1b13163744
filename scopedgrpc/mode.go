package scopedgrpc

import "github.com/go-scoped/scoped/shared/rpcscope"

// A CommitMode says when the interceptors commit a call's scope.
type CommitMode int

const (
	// Manual commits nothing: the handler commits what it wants (with
	// [scoped.Scope.Commit] or [scoped.ScopedSession.Commit]) and the rest
	// is rolled back when it returns. The default.
	Manual CommitMode = iota
	// Autocommit commits when the handler returns no error, before the
	// response (unary) or the final status (streaming) is sent, and rolls
	// back otherwise.
	Autocommit
)

// String returns the mode's name.
func (m CommitMode) String() string { return rpcscope.Mode(m).String() }
