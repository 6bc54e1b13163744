package scopedsql

import "errors"

// Sentinel errors, matched with [errors.Is]. The errors returned wrap them
// with the names involved.
var (
	// ErrUnknownEngine is returned for an engine name that [Open] was not
	// given. The error lists the names it was given.
	ErrUnknownEngine = errors.New("scopedsql: unknown engine")

	// ErrNoDefaultEngine is returned by [Open] when no engine is named
	// [DefaultEngine] and [RequireDefault] was not turned off.
	ErrNoDefaultEngine = errors.New(`scopedsql: no engine named "default"`)

	// ErrNoEngines is returned by [Open] given no engine at all.
	ErrNoEngines = errors.New("scopedsql: no engines configured")
)

// ErrConnInUse is returned by the teardown of [NewConn] (and by
// [CloseConn]) when something was still open on the scope's pinned
// connection as its scope ended: the connection was discarded rather than
// waited for.
var ErrConnInUse = errors.New("scopedsql: pinned connection still in use as its scope ended")
