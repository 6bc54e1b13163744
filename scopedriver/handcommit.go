package scopedriver

import (
	"errors"
	"fmt"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/shared/unit"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// notRunAgain is what Work returns for a job that failed with err, for the
// reason why, after part of its work was saved: by a hand commit of a
// session of its scope (ScopedSession.Commit), or by the scope's own
// commit of some of its sessions before another's failed. River would
// save that part once more per attempt, so the job is cancelled, as
// scoped.Run's WithRetry refuses to run such a unit again.
func notRunAgain(job *rivertype.JobRow, scope *scoped.Scope, why string, err error) error {
	if errors.Is(err, &rivertype.JobSnoozeError{}) {
		// River looks for a snooze before a cancellation: wrapped, it would
		// still run the job again. Keep its text only.
		err = errors.New(err.Error())
	}
	saved := "part of its work is saved"
	switch {
	case unit.UnknownByHand(scope) && !errors.Is(err, scoped.ErrCommitUnknown):
		saved = "part of its work may be saved" // a hand commit's outcome is unknown
		err = fmt.Errorf("%w: %w", scoped.ErrCommitUnknown, err)
	case errors.Is(err, scoped.ErrCommitUnknown):
		saved = "part of its work may be saved" // a hand commit's outcome is unknown
	case !errors.Is(err, scoped.ErrPartiallyCommitted):
		err = fmt.Errorf("%w: %w", scoped.ErrPartiallyCommitted, err)
	}
	return river.JobCancel(fmt.Errorf("scopedriver: job %d (%s): %s: %s, it is not run again: %w",
		job.ID, job.Kind, why, saved, err))
}
