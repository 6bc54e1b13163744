package scopedhttp

// A CommitMode says when the middleware commits a request's scope.
type CommitMode int

const (
	// Manual commits nothing: the handler commits what it wants (with
	// [scoped.Scope.Commit] or [scoped.ScopedSession.Commit]) and the rest
	// is rolled back when the handler returns. The default.
	Manual CommitMode = iota
	// Autocommit commits when the response status is 2xx, before the
	// status line is sent, and rolls back otherwise.
	Autocommit
	// AutocommitIncludeRedirect commits on 2xx and 3xx.
	AutocommitIncludeRedirect
)

// String returns the mode's name as Advanced Alchemy spells it.
func (m CommitMode) String() string {
	switch m {
	case Manual:
		return "manual"
	case Autocommit:
		return "autocommit"
	case AutocommitIncludeRedirect:
		return "autocommit_include_redirect"
	}
	return "CommitMode(invalid)"
}

// policy returns the commit decision of a mode; nil for Manual.
func (m CommitMode) policy() func(status int) bool {
	switch m {
	case Manual:
		return nil
	case Autocommit:
		return func(status int) bool { return status >= 200 && status < 300 }
	case AutocommitIncludeRedirect:
		return func(status int) bool { return status >= 200 && status < 400 }
	}
	panic("scopedhttp: unknown CommitMode " + m.String())
}
