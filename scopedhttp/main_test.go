package scopedhttp_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(scopedtest.CheckScopesM(m))
}

// bound is the kit's bound on every wait, never a timing assertion.
const bound = testkit.Bound

var (
	errCommit   = errors.New("fake: commit failed")
	errRollback = errors.New("fake: rollback failed")
)

// fakeTx is a database/sql-style session (Commit() and Rollback()), the
// shape scoped ends by default. It counts its calls.
type fakeTx struct {
	id int
	fx *fixture

	commits, rollbacks atomic.Int32
}

func (t *fakeTx) Commit() error {
	t.fx.log.Add("commit begin %d", t.id)
	if t.fx.onCommit != nil {
		t.fx.onCommit(t)
	}
	t.commits.Add(1)
	t.fx.log.Add("commit %d", t.id)
	return t.fx.commitErr
}

func (t *fakeTx) Rollback() error {
	t.rollbacks.Add(1)
	t.fx.log.Add("rollback %d", t.id)
	return t.fx.rollbackErr
}

// fixture is a ScopedSession of fakeTx with everything a test wants to
// look at: the sessions it created, in order, their commits and
// rollbacks, the event log and the teardown errors its hook received.
// Set commitErr, rollbackErr and onCommit before serving any request.
type fixture struct {
	reg *scoped.ScopedSession[*fakeTx]
	log testkit.Log

	commitErr, rollbackErr error
	onCommit               func(*fakeTx) // runs inside Commit, may block

	mu       sync.Mutex // guards txs and hookErrs
	txs      []*fakeTx
	hookErrs []error
}

func newFixture() *fixture {
	fx := &fixture{}
	fx.reg = scoped.New(func(context.Context) (*fakeTx, error) {
		fx.mu.Lock()
		defer fx.mu.Unlock()
		tx := &fakeTx{id: len(fx.txs) + 1, fx: fx}
		fx.txs = append(fx.txs, tx)
		fx.log.Add("create %d", tx.id)
		return tx, nil
	}, scoped.WithName("fake"), scoped.WithTeardownErrorHook(func(_ context.Context, err error) {
		fx.mu.Lock()
		defer fx.mu.Unlock()
		fx.hookErrs = append(fx.hookErrs, err)
	}))
	return fx
}

// middleware is scopedhttp.Middleware with fx's ScopedSession bound.
func (fx *fixture) middleware(opts ...scopedhttp.Option) func(http.Handler) http.Handler {
	// The uncommitted hook's default logging is tested on its own.
	return scopedhttp.Middleware(append([]scopedhttp.Option{scopedhttp.Bind(fx.reg), scopedhttp.WithUncommittedHook(nil)}, opts...)...)
}

func (fx *fixture) created() int {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return len(fx.txs)
}

func (fx *fixture) sessions() []*fakeTx {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return append([]*fakeTx(nil), fx.txs...)
}

func (fx *fixture) errs() []error {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return append([]error(nil), fx.hookErrs...)
}

// ended returns the total numbers of commits and rollbacks so far.
func (fx *fixture) ended() (commits, rollbacks int) {
	for _, tx := range fx.sessions() {
		commits += int(tx.commits.Load())
		rollbacks += int(tx.rollbacks.Load())
	}
	return commits, rollbacks
}

// wantEnded fails the test unless exactly commits commits and rollbacks
// rollbacks happened.
func (fx *fixture) wantEnded(t *testing.T, what string, commits, rollbacks int) {
	t.Helper()
	if c, r := fx.ended(); c != commits || r != rollbacks {
		t.Errorf("%s: %d commit(s), %d rollback(s); want %d, %d (events %q)", what, c, r, commits, rollbacks, fx.log.List())
	}
}

// session returns the request's session through scoped.Current, as a
// handler would. It may run on a server goroutine, so it reports with
// Errorf.
func session(t *testing.T, r *http.Request) *fakeTx {
	t.Helper()
	tx, err := scoped.Current[*fakeTx](r.Context())
	if err != nil {
		t.Errorf("scoped.Current in handler: %v", err)
		return nil
	}
	return tx
}

// serve starts a real HTTP/1.1 server on 127.0.0.1 for h, closed at the
// end of the test (Close waits for the requests in flight).
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // panics under test are expected
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

// returnedSignal wraps h so that the returned channel is closed once h's
// ServeHTTP has returned or panicked: everything the middleware does at
// the end of a request has happened by then.
func returnedSignal(h http.Handler) (http.Handler, <-chan struct{}) {
	done := make(chan struct{})
	var once sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer once.Do(func() { close(done) })
		h.ServeHTTP(w, r)
	}), done
}

// release returns a function that closes ch once; the test also calls it
// at cleanup, before the server closes, so that a failing test never
// leaves a handler blocked.
func release(t *testing.T, ch chan struct{}) func() {
	var once sync.Once
	f := func() { once.Do(func() { close(ch) }) }
	t.Cleanup(f)
	return f
}

// response is what a client of a real server got.
type response struct {
	status int
	header http.Header
	body   string
	err    error
}

// do sends a request to ts with ts's client and reads the whole response.
func do(ctx context.Context, ts *httptest.Server, method, path string) response {
	req, err := http.NewRequestWithContext(ctx, method, ts.URL+path, nil)
	if err != nil {
		return response{err: err}
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

// spyWriter is a minimal underlying ResponseWriter (no optional
// interfaces) that lets a test look at the session's state at the moment
// the status or a body byte reaches the server.
type spyWriter struct {
	header http.Header
	code   int
	body   []byte

	// onWriteHeader, if set, runs when the status reaches the writer,
	// before it is recorded.
	onWriteHeader func(code int)
}

func newSpy() *spyWriter { return &spyWriter{header: http.Header{}} }

func (s *spyWriter) Header() http.Header { return s.header }

func (s *spyWriter) WriteHeader(code int) {
	if s.code != 0 {
		return
	}
	if s.onWriteHeader != nil {
		s.onWriteHeader(code)
	}
	s.code = code
}

func (s *spyWriter) Write(p []byte) (int, error) {
	if s.code == 0 {
		s.WriteHeader(http.StatusOK)
	}
	s.body = append(s.body, p...)
	return len(p), nil
}

// readerFromSpy is a spyWriter that also has io.ReaderFrom, recording
// that the wrapper passed ReadFrom through.
type readerFromSpy struct {
	*spyWriter
	readFrom int
}

func (s *readerFromSpy) ReadFrom(src io.Reader) (int64, error) {
	s.readFrom++
	if s.code == 0 {
		s.WriteHeader(http.StatusOK)
	}
	b, err := io.ReadAll(src)
	s.body = append(s.body, b...)
	return int64(len(b)), err
}
