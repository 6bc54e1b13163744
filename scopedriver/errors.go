package scopedriver

import "errors"

// ErrNoClient is returned by a job completed with [CompleteTx] whose work
// context carries no *river.Client[pgx.Tx]: the middleware runs under a
// client of another driver, or outside River. Nothing is committed and
// River retries the job.
var ErrNoClient = errors.New("scopedriver: CompleteTx needs the work context of a River client with the riverpgxv5 driver (*river.Client[pgx.Tx])")
