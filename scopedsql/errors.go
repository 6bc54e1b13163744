package scopedsql

import (
	"errors"

	"github.com/go-scoped/scoped/internal/sqlconn"
)

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

// ErrConnInUse is returned by the teardown of a pinned connection
// ([NewConn], scoped.New([Conn]), any *sql.Conn session with scoped's
// default teardown, and [CloseConn]) when something was still open on it
// as its scope ended: the connection was discarded rather than waited for.
var ErrConnInUse = sqlconn.ErrInUse
