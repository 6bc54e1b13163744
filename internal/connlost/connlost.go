// Package connlost lets scopedsql tell the core which errors of a
// database/sql commit say that the connection was lost, so that the
// core's default commit of a *sql.Tx reports them as scoped.ErrCommitUnknown
// (the commit may have landed) rather than as a refusal. The core knows the
// standard library's errors only; the drivers' own (SQLSTATE, driver
// texts) are scopedsql's, and live there once.
package connlost

// Driver reports whether err says the connection was lost, by the rules
// of the drivers scopedsql knows. scopedsql sets it in its init; until
// then it knows nothing.
var Driver = func(error) bool { return false }
