// Package reliability holds no code: its tests are the reliability suite
// of the module against real database servers. They show, with figures,
// that under load, faults and bad input nothing is lost, nothing
// half-commits, nothing leaks and no scope sees another's session.
//
//   - TestStorm sends thousands of requests through a real http.Server
//     running scopedhttp in Autocommit mode with one scopedsql transaction
//     per request, on PostgreSQL and on MariaDB: requests that commit, fail
//     with 4xx and 5xx, panic, exceed their deadline, are abandoned by the
//     client, hit an injected commit failure, and, midway, lose every
//     server-side connection of the pool (pg_terminate_backend, KILL).
//     Afterwards every id answered 2xx is in the table exactly once and no
//     other id is; no connection is in use or idle in a transaction; no
//     goroutine, scope or session is left; and the pool serves again.
//   - TestPoolExhaustion runs more scopes than the pool has connections,
//     with and without deadlines: nothing deadlocks, a waiting scope either
//     gets a connection or fails with its context's error, nothing leaks.
//   - TestServerRestartLosesNothingAndMakesNoPhantom commits under 16
//     writers, through lib/pq and scopedsql.VerifiedCommit, while a
//     PostgreSQL cluster of its own restarts and crashes 8 times
//     (dbtest.RestartLoad, shared with scopedpgx's test on pgx): no id
//     answered saved lacks its row, none answered not saved has one.
//
// The tests read SCOPED_TEST_POSTGRES_DSN and SCOPED_TEST_MYSQL_DSN (see
// internal/dbtest) and skip without them. SCOPED_STORM_REQUESTS changes the
// storm's size (default 5000); SCOPED_RELIABILITY_REPORT=path appends the
// figures of each run to path, one JSON object per line. RELIABILITY.md at
// the module root states the promises, the test that proves each, and the
// figures of the last run.
package reliability
