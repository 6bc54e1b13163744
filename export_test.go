package scoped

// SetNetFiredHook lets tests wait for a safety net that ended only part of
// a scope (one holding WithoutSafetyNet sessions), which leaves the scope
// open and so cannot be observed through Scope.Err. nil removes it.
func SetNetFiredHook(f func(*Scope)) {
	if f == nil {
		testHookNetFired.Store(nil)
		return
	}
	testHookNetFired.Store(&f)
}
