package dbtest

import (
	"slices"

	"github.com/go-scoped/scoped"
)

// The outcome tables of scopedhttp and scopedgrpc: a unit commits a row by
// hand (or not), then ends one way or another; each row checks that what
// the client was told is true of the rows in the table. A hand commit is
// "none", "ok", "failed", "unknown-saved" or "unknown-lost"; the ending
// ("then") is "ok", or a failure the adapter names ("commit-fail" and
// "txcommit-fail" are commits refused after the handler's work).

// An Answer is what a client was told, as the adapter's default error
// handler words it; adapters add the ones only they give.
type Answer string

const (
	AnswerOK       Answer = "success"
	AnswerNotSaved Answer = "not saved"
	AnswerRetry    Answer = "not saved, retry"
	AnswerPartial  Answer = "partially saved"
	AnswerMaybe    Answer = "may have been saved"
	AnswerHandler  Answer = "the handler's own error"
)

// Sentinel is the scoped error the answer stands for, if any.
func (a Answer) Sentinel() error {
	switch a {
	case AnswerNotSaved:
		return scoped.ErrNotCommitted
	case AnswerPartial:
		return scoped.ErrPartiallyCommitted
	case AnswerMaybe:
		return scoped.ErrCommitUnknown
	}
	return nil
}

// OutcomeIntended is the ids the handler meant to save: 1 by hand (1000001
// for a hand commit bound to fail), then 2 (1000002 for a commit bound to
// fail, -2 for one bound to conflict).
func OutcomeIntended(hand, then string) []int64 {
	var ids []int64
	switch hand {
	case "none":
	case "failed":
		ids = append(ids, 1000001)
	default:
		ids = append(ids, 1)
	}
	switch then {
	case "commit-fail", "txcommit-fail":
		return append(ids, 1000002)
	case "commit-40001":
		return append(ids, -2)
	}
	return append(ids, 2)
}

// OutcomeRows is what must be in the table: the hand-committed row when
// its commit landed, the unit's when its commit did.
func OutcomeRows(hand, then string) []int64 {
	var ids []int64
	if hand == "ok" || hand == "unknown-saved" {
		ids = append(ids, 1)
	}
	if then == "ok" {
		ids = append(ids, 2)
	}
	return ids
}

// OutcomeLie says why what a client was told is untrue of rows, or "".
// maybe: a hand commit's outcome is unknown; savedFirst: the first run
// saved something, or may have. An answer an adapter adds (an early end)
// is checked by the adapter.
func OutcomeLie(got Answer, rows, intended []int64, maybe bool, runs int, savedFirst bool) string {
	all := true
	for _, id := range intended {
		all = all && slices.Contains(rows, id)
	}
	switch {
	case got == AnswerOK && !all:
		return "success for work not saved"
	case (got == AnswerNotSaved || got == AnswerRetry) && (len(rows) > 0 || maybe):
		return "\"not saved\" for work saved or maybe saved"
	case got == AnswerPartial && len(rows) == 0 && !maybe:
		return "\"partially saved\" with nothing saved"
	case runs > 1 && savedFirst:
		return "run again after its first run saved, or may have"
	}
	return ""
}
