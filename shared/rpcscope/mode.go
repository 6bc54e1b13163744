package rpcscope

// A Mode is the packages' CommitMode: when the interceptor commits a
// call's scope.
type Mode int

// The modes. The packages' CommitMode constants are declared in this
// order, so that a CommitMode converts to the Mode of the same name.
const (
	Manual Mode = iota
	Autocommit
)

// String returns the mode's name.
func (m Mode) String() string {
	switch m {
	case Manual:
		return "manual"
	case Autocommit:
		return "autocommit"
	}
	return "CommitMode(invalid)"
}

// Mode is the package's WithCommitMode: Manual commits nothing (no
// policy), Autocommit commits when the handler's code is OK. It panics on
// an unknown mode.
func (p *Package[C]) Mode(m Mode) Option[C] {
	var commit func(C) bool
	switch m {
	case Manual:
	case Autocommit:
		ok := p.OK
		commit = func(c C) bool { return c == ok }
	default:
		panic(p.Name + ": unknown CommitMode " + m.String())
	}
	return func(c *Config[C]) { c.commit = commit }
}
