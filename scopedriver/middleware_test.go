package scopedriver_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedriver"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// fakeSession records how its scope ended it.
type fakeSession struct {
	committed, rolledBack, closed int
	commitErr, closeErr           error
}

func (f *fakeSession) Commit(context.Context) error   { f.committed++; return f.commitErr }
func (f *fakeSession) Rollback(context.Context) error { f.rolledBack++; return nil }
func (f *fakeSession) Close() error                   { f.closed++; return f.closeErr }

// fakeSessions is a ScopedSession handing out f, with a silent teardown
// hook (the failures are on purpose).
func fakeSessions(f *fakeSession) *scoped.ScopedSession[*fakeSession] {
	return scoped.New(func(context.Context) (*fakeSession, error) { return f, nil },
		scoped.WithTeardownErrorHook(nil))
}

var runningJob = &rivertype.JobRow{ID: 7, Kind: "scopedriver_row", State: rivertype.JobStateRunning, Attempt: 1}

// use is a Work that takes the bound session, then returns err.
func use(t *testing.T, err error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if _, cerr := scoped.Current[*fakeSession](ctx); cerr != nil {
			t.Errorf("scoped.Current in Work: %v", cerr)
		}
		return err
	}
}

func TestWorkCommitsOnNil(t *testing.T) {
	f := &fakeSession{}
	m := scopedriver.NewMiddleware(scopedriver.Bind(fakeSessions(f)))
	if err := m.Work(context.Background(), runningJob, use(t, nil)); err != nil {
		t.Fatalf("Work = %v, want nil", err)
	}
	if f.committed != 1 || f.rolledBack != 0 || f.closed != 1 {
		t.Errorf("session committed %d, rolled back %d, closed %d; want 1, 0, 1", f.committed, f.rolledBack, f.closed)
	}
}

func TestWorkRollsBackOnError(t *testing.T) {
	f := &fakeSession{}
	m := scopedriver.NewMiddleware(scopedriver.Bind(fakeSessions(f)))
	errWork := errors.New("work failed")
	err := m.Work(context.Background(), runningJob, use(t, errWork))
	if err != errWork { //nolint:errorlint // the error must reach River as it is
		t.Fatalf("Work = %v, want Work's own error unchanged", err)
	}
	if f.committed != 0 || f.rolledBack != 1 || f.closed != 1 {
		t.Errorf("session committed %d, rolled back %d, closed %d; want 0, 1, 1", f.committed, f.rolledBack, f.closed)
	}
}

// River's own error kinds go through: a snooze rolls the attempt back and
// stays a snooze.
func TestWorkKeepsRiverErrors(t *testing.T) {
	f := &fakeSession{}
	m := scopedriver.NewMiddleware(scopedriver.Bind(fakeSessions(f)))
	err := m.Work(context.Background(), runningJob, use(t, river.JobCancel(errors.New("give up"))))
	var cancel *rivertype.JobCancelError
	if !errors.As(err, &cancel) {
		t.Fatalf("Work = %v, want a *rivertype.JobCancelError", err)
	}
	if f.rolledBack != 1 {
		t.Errorf("rolled back %d times, want 1", f.rolledBack)
	}
}

func TestWorkRollsBackOnPanic(t *testing.T) {
	f := &fakeSession{}
	m := scopedriver.NewMiddleware(scopedriver.Bind(fakeSessions(f)))
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("recovered %v, want the job's own panic", p)
			}
		}()
		_ = m.Work(context.Background(), runningJob, func(ctx context.Context) error {
			_ = use(t, nil)(ctx)
			panic("boom")
		})
	}()
	if f.committed != 0 || f.rolledBack != 1 || f.closed != 1 {
		t.Errorf("session committed %d, rolled back %d, closed %d; want 0, 1, 1", f.committed, f.rolledBack, f.closed)
	}
}

func TestWorkReturnsFailedCommit(t *testing.T) {
	errCommit := errors.New("commit refused")
	f := &fakeSession{commitErr: errCommit}
	m := scopedriver.NewMiddleware(scopedriver.Bind(fakeSessions(f)))
	err := m.Work(context.Background(), runningJob, use(t, nil))
	if !errors.Is(err, errCommit) || !strings.HasPrefix(err.Error(), "scopedriver: job 7 (scopedriver_row): commit: ") {
		t.Fatalf("Work = %v, want the commit's error, naming the job", err)
	}
	if !errors.Is(err, scoped.ErrNotCommitted) {
		t.Errorf("Work = %v, want it to wrap scoped.ErrNotCommitted", err)
	}
}

// A close failing after a successful commit does not make River run the
// job again: its work is saved.
func TestWorkCommittedCloseFailedIsDone(t *testing.T) {
	var hooked []error
	f := &fakeSession{closeErr: errors.New("close failed")}
	sessions := scoped.New(func(context.Context) (*fakeSession, error) { return f, nil },
		scoped.WithTeardownErrorHook(func(_ context.Context, err error) { hooked = append(hooked, err) }))
	m := scopedriver.NewMiddleware(scopedriver.Bind(sessions))
	if err := m.Work(context.Background(), runningJob, use(t, nil)); err != nil {
		t.Fatalf("Work = %v, want nil: the job's work was committed", err)
	}
	if f.committed != 1 {
		t.Errorf("committed %d times, want 1", f.committed)
	}
	if len(hooked) == 0 || !errors.Is(errors.Join(hooked...), f.closeErr) {
		t.Errorf("teardown hook saw %v, want the close error", hooked)
	}
}

func TestWorkWithoutSessionCommitsNothing(t *testing.T) {
	f := &fakeSession{}
	m := scopedriver.NewMiddleware(scopedriver.Bind(fakeSessions(f)))
	if err := m.Work(context.Background(), runningJob, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if f.committed+f.rolledBack+f.closed != 0 {
		t.Errorf("an unused session was ended: %+v", f)
	}
}

func TestEachJobHasItsOwnScope(t *testing.T) {
	var made int
	sessions := scoped.New(func(context.Context) (*fakeSession, error) { made++; return &fakeSession{}, nil })
	m := scopedriver.NewMiddleware(scopedriver.Bind(sessions))
	var first *fakeSession
	for i := 0; i < 2; i++ {
		err := m.Work(context.Background(), runningJob, func(ctx context.Context) error {
			a, _ := scoped.Current[*fakeSession](ctx)
			b, _ := sessions.Current(ctx)
			if a != b {
				t.Error("scoped.Current and the ScopedSession disagree within one job")
			}
			if a == first {
				t.Error("a second job got the first job's session")
			}
			first = a
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if made != 2 {
		t.Errorf("factory ran %d times for 2 jobs, want 2", made)
	}
}

func TestTwoBindsOfOneTypePanic(t *testing.T) {
	a, b := fakeSessions(&fakeSession{}), fakeSessions(&fakeSession{})
	defer func() {
		p, _ := recover().(string)
		if !strings.HasPrefix(p, "scopedriver: ") || !strings.Contains(p, "*scopedriver_test.fakeSession") {
			t.Errorf("panic %q, want one with the package prefix naming the session type", p)
		}
	}()
	scopedriver.NewMiddleware(scopedriver.Bind(a), scopedriver.Bind(b))
	t.Error("no panic")
}

func TestNilOptionsPanic(t *testing.T) {
	for name, f := range map[string]func(){
		"Bind":       func() { scopedriver.Bind[*fakeSession](nil) },
		"CompleteTx": func() { scopedriver.CompleteTx(nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if p, _ := recover().(string); !strings.HasPrefix(p, "scopedriver: ") {
					t.Errorf("panic %q, want one with the package prefix", p)
				}
			}()
			f()
		})
	}
}

// Outside a River client (here: no client in the context) CompleteTx
// cannot complete the job: the job's work is rolled back, not committed
// without its completion.
func TestCompleteTxWithoutClientRollsBack(t *testing.T) {
	f := &fakeSession{}
	txs := scoped.New(func(context.Context) (pgx.Tx, error) {
		t.Error("a transaction was begun for a completion that cannot happen")
		return nil, errors.New("no")
	}, scoped.WithRollback(func(context.Context, pgx.Tx) error { return nil }))
	m := scopedriver.NewMiddleware(scopedriver.Bind(fakeSessions(f)), scopedriver.CompleteTx(txs))
	err := m.Work(context.Background(), runningJob, use(t, nil))
	if !errors.Is(err, scopedriver.ErrNoClient) {
		t.Fatalf("Work = %v, want ErrNoClient", err)
	}
	if f.committed != 0 || f.rolledBack != 1 {
		t.Errorf("session committed %d, rolled back %d; want 0, 1", f.committed, f.rolledBack)
	}
}
