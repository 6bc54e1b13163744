package scopedriver

import (
	"errors"
	"fmt"

	"github.com/go-scoped/scoped"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// notRunAgain is what Work returns for a job that failed with err after a
// session of its scope was committed by hand (ScopedSession.Commit): River
// would save that part once more per attempt, so the job is cancelled,
// as scoped.Run's WithRetry refuses to run such a unit again.
func notRunAgain(job *rivertype.JobRow, err error) error {
	if errors.Is(err, &rivertype.JobSnoozeError{}) {
		// River looks for a snooze before a cancellation: wrapped, it would
		// still run the job again. Keep its text only.
		err = errors.New(err.Error())
	}
	return river.JobCancel(fmt.Errorf("scopedriver: job %d (%s): a session of the job was committed by hand (ScopedSession.Commit) before it failed: "+
		"part of its work is saved, it is not run again (%w): %w", job.ID, job.Kind, scoped.ErrPartiallyCommitted, err))
}
