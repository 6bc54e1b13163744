// Package connlost lets scopedsql tell the core which errors of a
// database/sql commit leave its outcome unknown (the connection was lost
// after COMMIT was sent, or the server itself does not know), so that the
// core's default commit of a *sql.Tx reports them as
// scoped.ErrCommitUnknown rather than as a refusal. The core knows the
// standard library's errors only; the drivers' own (SQLSTATE, driver
// texts) are scopedsql's, and live there once.
package connlost

// CommitUnknown reports whether a commit that failed with err may have
// been saved, by the rules of the drivers scopedsql knows. scopedsql sets
// it in its init; until then it knows nothing.
var CommitUnknown = func(error) bool { return false }
