package sqlconn

import (
	"database/sql"
	"database/sql/driver"
)

// Idle reports whether nothing is open on c now, so that a statement run
// on it (a session reset) cannot wait for a leftover. It is false when
// that cannot be known (see inuse.go).
func Idle(c *sql.Conn) bool {
	free, known := idle(c)
	return free && known
}

// Discard closes c's driver connection, ending its server session, and c:
// the pool forgets the connection instead of reusing it. c must be idle
// (see Idle), or Discard waits for what is open on it.
func Discard(c *sql.Conn) {
	_ = c.Raw(func(any) error { return driver.ErrBadConn })
}
