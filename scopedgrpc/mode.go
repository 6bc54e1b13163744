package scopedgrpc

import "google.golang.org/grpc/codes"

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
func (m CommitMode) policy() func(codes.Code) bool {
	switch m {
	case Manual:
		return nil
	case Autocommit:
		return func(c codes.Code) bool { return c == codes.OK }
	}
	panic("scopedgrpc: unknown CommitMode " + m.String())
}
