package scopedriver

import (
	"context"
	"fmt"

	"github.com/go-scoped/scoped"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
)

// completeInTx marks job completed in txs's transaction of ctx's scope.
//
// River's JobCompleteTx goes through the pgx.Tx interface only (Exec,
// Query, QueryRow), so the guarded transaction of scopedpgx serves it as
// it is: no raw transaction is needed, and the guard keeps protecting the
// connection.
func completeInTx(ctx context.Context, txs *scoped.ScopedSession[pgx.Tx], job *rivertype.JobRow) error {
	// JobCompleteTx panics without a client; say what is wrong instead.
	if _, err := river.ClientFromContextSafely[pgx.Tx](ctx); err != nil {
		return fmt.Errorf("%w (job %d, kind %s)", ErrNoClient, job.ID, job.Kind)
	}
	tx, err := txs.Current(ctx)
	if err != nil {
		return fmt.Errorf("scopedriver: job %d (%s): transaction for its completion: %w", job.ID, job.Kind, err)
	}
	// Work has succeeded: like the commit that follows, the completion is
	// not abandoned because the job's context ends now.
	_, err = river.JobCompleteTx[*riverpgxv5.Driver](context.WithoutCancel(ctx), tx, &river.Job[anyArgs]{JobRow: job})
	if err != nil {
		return fmt.Errorf("scopedriver: job %d (%s): completing it in its transaction: %w", job.ID, job.Kind, err)
	}
	return nil
}

// anyArgs stands for the arguments of a job of any kind: the middleware
// sees only the job's row, and the completion does not need its arguments.
type anyArgs struct{}

func (anyArgs) Kind() string { return "" }

// UnmarshalJSON ignores the encoded arguments, which belong to the
// worker's own type.
func (*anyArgs) UnmarshalJSON([]byte) error { return nil }
