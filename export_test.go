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

// PauseTracking stops leak tracking until resume is called, for tests
// that count allocations (tracking reads the stack at every Begin). It
// must not overlap a test that begins scopes concurrently.
func PauseTracking() (resume func()) {
	n := tracking.Swap(0)
	return func() { tracking.Add(n) }
}

// SetNetIdleHook lets tests wait for a safety net that found nothing to
// end, which leaves no other trace. nil removes it.
func SetNetIdleHook(f func(*Scope)) {
	if f == nil {
		testHookNetIdle.Store(nil)
		return
	}
	testHookNetIdle.Store(&f)
}

// ForgetRetryWarnings lets a test that counts the once-per-call-site
// warnings of unread retry requests run more than once in a process
// (go test -count).
func ForgetRetryWarnings() { warnedRetry.Clear() }
