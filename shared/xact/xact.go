// Package xact is how scopedpgx and scopedsql learn what became of a
// PostgreSQL transaction whose COMMIT lost its connection: the two
// statements and the one rule, kept in one place.
//
// Before COMMIT a transaction that has written reads its id and when it
// began ([ReadSQL]). After a COMMIT whose answer was lost, another
// connection asks pg_xact_status of that id ([StatusSQL]). One thing makes
// the answer subtle: after a crash, PostgreSQL hands out again the ids of
// transactions of which nothing reached its disk. Such a transaction did
// not commit, but its id may by now belong to another transaction, which
// may have committed. Crash recovery always ends in a checkpoint before
// the server hands out ids, so [StatusSQL] also asks whether the server has
// checkpointed since the transaction began; when it has, "committed" is
// not proof ([Unknown]), while "aborted" still is, and so is an id the
// server says is in the future ([Forgotten]): it forgot it.
//
// It is not for applications: it is public only because scopedpgx is a
// module of its own (see package bindings).
package xact

import (
	"errors"
	"strings"
)

// ReadSQL returns the transaction's id (NULL until it has written) and
// when it began, in seconds since the epoch on the server's clock.
const ReadSQL = "select pg_current_xact_id_if_assigned()::text, extract(epoch from now())::text"

// StatusSQL asks, for $1 (an id from ReadSQL) and $2 (its beginning),
// what became of the transaction and whether the server has checkpointed
// since it began. pg_control_checkpoint's time has a resolution of a
// second: a checkpoint in the second the transaction began counts.
const StatusSQL = "select pg_xact_status($1::xid8), " +
	"(pg_control_checkpoint()).checkpoint_time >= to_timestamp(floor($2::float8))"

// A Verdict is what a status says of the transaction.
type Verdict int

const (
	Pending   Verdict = iota // still in progress: ask again
	Committed                // saved
	Aborted                  // not saved
	Unknown                  // cannot be known: report scoped.ErrCommitUnknown
)

// Of returns the verdict of a status (nil: NULL, the id is too old to be
// known) given whether the server checkpointed since the transaction
// began, and, for Unknown, why in words.
func Of(status *string, checkpointed bool) (Verdict, string) {
	switch {
	case status == nil:
		return Unknown, "the transaction is too old for the server to know"
	case *status == "committed" && checkpointed:
		return Unknown, "the server says committed, but it has checkpointed (as it does after a crash) " +
			"since the transaction began, so the id may be another transaction's"
	case *status == "committed":
		return Committed, ""
	case *status == "aborted":
		return Aborted, ""
	}
	return Pending, ""
}

// Forgotten reports whether err, from StatusSQL, says that the id is in
// the future: the server that gave it has forgotten it, which happens only
// when it crashed before anything of the transaction reached its disk, so
// nothing was saved.
func Forgotten(err error) bool {
	var s interface{ SQLState() string }
	return errors.As(err, &s) && s.SQLState() == "22023" && strings.Contains(err.Error(), "in the future")
}
