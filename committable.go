package scoped

// Committable returns how many of the sessions the scope holds now
// [Scope.Commit] would commit: those with a commit (a transaction), not a
// pinned connection whose statements were saved as they ran, nor a child
// scope's share of its parent's session. It tells a scope that holds
// uncommitted work from one that has nothing to commit, as
// scopedhttp's Manual mode must before it reports a forgotten commit.
func (s *Scope) Committable() int {
	n := 0
	for e := s.head.Load(); e != nil; e = e.next.Load() {
		if e.state.Load() == stateReady && e.self.committable() {
			n++
		}
	}
	return n
}
