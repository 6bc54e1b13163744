package scopedconnect

import "connectrpc.com/connect"

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
func (m CommitMode) String() string {
	switch m {
	case Manual:
		return "manual"
	case Autocommit:
		return "autocommit"
	}
	return "CommitMode(invalid)"
}

// policy returns the commit decision of a mode; nil for Manual.
func (m CommitMode) policy() func(connect.Code) bool {
	switch m {
	case Manual:
		return nil
	case Autocommit:
		return func(c connect.Code) bool { return c == OK }
	}
	panic("scopedconnect: unknown CommitMode " + m.String())
}

// OK is the code a commit policy sees for a handler that returned no
// error. Connect has no code for success; 0 is not one of its error codes.
const OK connect.Code = 0
