package scopedhttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

// FuzzMiddleware runs the middleware around a handler whose behaviour comes
// from the fuzz input: the commit mode or a custom policy, whether the
// commit fails, whether the underlying writer is a Flusher and an
// io.ReaderFrom, the error handler, the buffer limit, and a sequence of
// handler actions (ask for the session, set a header, WriteHeader with any
// status including 1xx and invalid ones, Write, Flush, ReadFrom, cancel
// the request's context, commit by hand, panic). A reference simulation of
// the contract says what the client must get; besides, these invariants
// are checked on the recorded events themselves:
//
//   - a session that was created ends with exactly one commit or rollback;
//   - in the automatic modes a commit happens only after the handler
//     returned, only if the policy accepts the status, and, unless the
//     response outgrew the buffer or was flushed, before anything but a
//     1xx reached the underlying writer; in Manual mode only when the
//     handler commits;
//   - a failed commit never lets a held 2xx or 3xx out, nor any byte of
//     the handler's body, nor the handler's headers; a streaming response
//     whose commit failed is aborted (panic(http.ErrAbortHandler));
//   - a panic goes on, with its value, after the rollback;
//   - a cancelled request with a session is rolled back at once, by the
//     safety net, before the handler returns;
//   - nothing stays live: the scope has ended and the ScopedSession holds
//     no session.
//
// Run it with: go test -run '^$' -fuzz '^FuzzMiddleware$' -fuzztime=10s ./scopedhttp
func FuzzMiddleware(f *testing.F) {
	for _, seed := range [][]byte{
		{1, 0, fzaCurrent, fzaWriteHeader, 1, fzaWrite, 3},                 // Autocommit, 201: commit
		{1 | fzCommitFails, 0, fzaCurrent, fzaWriteHeader, 1, fzaWrite, 3}, // commit fails: 500
		{1, 0, fzaCurrent, fzaWriteHeader, 10},                             // 404: rollback
		{2, 0, fzaCurrent, fzaWriteHeader, 7, fzaWrite, 1},                 // redirect mode, 302
		{1, 0, fzaCurrent},                                    // implicit 200
		{1 | fzCommitFails, 0, fzaCurrent},                    // implicit 200, commit fails
		{1 | fzFlusher, 0, fzaCurrent, fzaFlush, fzaWrite, 2}, // flush streams; committed at the return
		{1, 0, fzaCurrent, fzaFlush},                          // not a Flusher: nothing streams
		{1 | fzReaderFrom, 0, fzaCurrent, fzaReadFrom, 4},
		{1, 0, fzaCurrent, fzaPanic},                                           // panic: rolled back, nothing sent
		{1, 0, fzaCurrent, fzaWrite, 1, fzaPanic},                              // panic with a held body: nothing sent
		{1, 0, fzaCurrent, fzaCancel, fzaWriteHeader, 0},                       // client gone: rolled back at once
		{1 | fzDeadline, 0, fzaCurrent, fzaCancel, fzaWrite, 1},                // deadline passed: 503
		{1, 0, fzaCurrent, fzaWriteHeader, 13, fzaWriteHeader, 1, fzaWrite, 1}, // 103 Early Hints, then 201
		{1, 0, fzaCurrent, fzaWriteHeader, 200, 42},                            // invalid status: panics at the call
		{3 | fzCommitFails, 0, fzaCurrent, fzaWriteHeader, 200, 42},            // invalid even for a custom policy
		{0, 0, fzaCurrent, fzaCommit, fzaCurrent, fzaWriteHeader, 1},           // Manual: hand commit
		{0 | fzCommitFails, 0, fzaCurrent, fzaCommit},                          // Manual: hand commit fails
		{0, 0, fzaCurrent, fzaWrite, 1},                                        // Manual: rollback
		{1 | fzCustomErr, 0, fzaHeader, fzaCurrent, fzaWriteHeader, 1},
		{1 | fzCommitFails | fzCustomErr, 0, fzaHeader, fzaCurrent, fzaWriteHeader, 1, fzaWrite, 1},
		{1, 0, fzaWrite, 1, fzaCurrent, fzaCurrent},     // sessions asked for after the first write
		{1, 0, fzaWriteHeader, 3, fzaCurrent, fzaPanic}, // 101 is a final status
		{1 | fzRollbackFails, 0, fzaCurrent, fzaWriteHeader, 21},
		{1, fzSmallLimit, fzaCurrent, fzaWrite, 3, fzaWrite, 3},                 // outgrows the limit: streams, commits at the return
		{1 | fzCommitFails, fzSmallLimit, fzaCurrent, fzaWrite, 3, fzaWrite, 3}, // streams, commit fails: aborted
		{1 | fzCommitFails | fzFlusher, 0, fzaCurrent, fzaWrite, 1, fzaFlush},   // flushed, commit fails: aborted
		{1 | fzCommitFails | fzReaderFrom, fzSmallLimit, fzaCurrent, fzaReadFrom, 7},
		{1, 0, fzaCurrent, fzaWriteHeader, 1, fzaCurrent, fzaWrite, 1}, // statements after the status
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fzServe(t, fzDecode(data))
	})
}

// Configuration bits (first byte; its low two bits pick the mode).
const (
	fzCommitFails   = 1 << 2
	fzRollbackFails = 1 << 3
	fzFlusher       = 1 << 4
	fzReaderFrom    = 1 << 5
	fzDeadline      = 1 << 6 // the request's context ends with DeadlineExceeded
	fzCustomErr     = 1 << 7 // a custom error handler instead of the default
)

// Second configuration byte.
const (
	fzSmallLimit = 1 << 0 // WithBufferLimit(fzLimit): small bodies outgrow it
	fzLimit      = 4
)

// Handler actions.
const (
	fzaCurrent byte = iota
	fzaHeader
	fzaWriteHeader
	fzaWrite
	fzaFlush
	fzaReadFrom
	fzaCancel
	fzaCommit // Manual mode: Scope.Commit by hand
	fzaPanic
	fzaKinds
)

// fzCodes are the statuses a WriteHeader action picks from with a byte
// below 200; other bytes read a second byte for a status in 0..1099.
var fzCodes = []int{200, 201, 204, 101, 299, 300, 301, 302, 304, 399, 404, 409, 400, 103, 100, 199, 500, 503, 599, 600, 999, 0, 99, 1000, 422, 102}

type fzAction struct {
	kind byte
	code int
	n    int
}

type fzCase struct {
	mode                                  byte // 0 Manual, 1 Autocommit, 2 AutocommitIncludeRedirect, 3 custom policy
	commitFails, rollbackFails            bool
	flusher, readerFrom, deadline, custom bool
	small                                 bool // WithBufferLimit(fzLimit)
	actions                               []fzAction
}

func (c fzCase) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode %d commitFails=%v rollbackFails=%v flusher=%v readerFrom=%v deadline=%v customErrorHandler=%v smallLimit=%v actions:",
		c.mode, c.commitFails, c.rollbackFails, c.flusher, c.readerFrom, c.deadline, c.custom, c.small)
	for _, a := range c.actions {
		name := [...]string{"Current", "Header", "WriteHeader", "Write", "Flush", "ReadFrom", "Cancel", "Commit", "Panic"}[a.kind]
		switch a.kind {
		case fzaWriteHeader:
			fmt.Fprintf(&b, " %s(%d)", name, a.code)
		case fzaWrite, fzaReadFrom:
			fmt.Fprintf(&b, " %s(%d bytes)", name, a.n)
		default:
			b.WriteString(" " + name)
		}
	}
	return b.String()
}

func fzDecode(data []byte) fzCase {
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		c := data[0]
		data = data[1:]
		return c
	}
	cfg := next()
	c := fzCase{
		mode:          cfg & 3,
		commitFails:   cfg&fzCommitFails != 0,
		rollbackFails: cfg&fzRollbackFails != 0,
		flusher:       cfg&fzFlusher != 0,
		readerFrom:    cfg&fzReaderFrom != 0,
		deadline:      cfg&fzDeadline != 0,
		custom:        cfg&fzCustomErr != 0,
	}
	c.small = next()&fzSmallLimit != 0
	for len(data) > 0 && len(c.actions) < 16 {
		a := fzAction{kind: next() % fzaKinds}
		switch a.kind {
		case fzaWriteHeader:
			if b := next(); b < 200 {
				a.code = fzCodes[int(b)%len(fzCodes)]
			} else {
				a.code = (int(b)<<8 | int(next())) % 1100
			}
		case fzaWrite, fzaReadFrom:
			a.n = int(next() % 8)
		}
		c.actions = append(c.actions, a)
	}
	return c
}

func (c fzCase) policy(status int) bool {
	switch c.mode {
	case 1:
		return status >= 200 && status < 300
	case 2:
		return status >= 200 && status < 400
	case 3:
		return status%2 == 0 // any func(int) bool may be given
	}
	return false
}

type fzTx struct {
	log                *testkit.Log
	commitErr, rbErr   error
	commits, rollbacks int
}

func (x *fzTx) Commit() error {
	x.commits++
	x.log.Add("tx commit")
	return x.commitErr
}

func (x *fzTx) Rollback() error {
	x.rollbacks++
	x.log.Add("tx rollback")
	return x.rbErr
}

var (
	errFzCommit   = errors.New("fuzz: commit failed")
	errFzRollback = errors.New("fuzz: rollback failed")
)

// fzWriter is the underlying ResponseWriter. It behaves like net/http's:
// 1xx other than 101 are informational, the first other status is the
// response's (later ones are ignored), an invalid status panics, and a
// body write or flush without a status sends 200.
type fzWriter struct {
	log      *testkit.Log
	header   http.Header
	status   int
	infos    []int
	body     strings.Builder
	flushes  int
	atStatus http.Header // the header when the status went out
}

func (w *fzWriter) Header() http.Header { return w.header }

func (w *fzWriter) WriteHeader(code int) {
	if w.status != 0 {
		return // superfluous
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		w.infos = append(w.infos, code)
		w.log.Add("writer info %d", code)
		return
	}
	w.status = code
	w.atStatus = w.header.Clone()
	w.log.Add("writer status %d", code)
}

func (w *fzWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.log.Add("writer body %d", len(p))
	w.body.Write(p)
	return len(p), nil
}

type fzFlushWriter struct{ *fzWriter }

func (w fzFlushWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.flushes++
	w.log.Add("writer flush")
}

type fzReadFromWriter struct{ *fzWriter }

func (w fzReadFromWriter) ReadFrom(r io.Reader) (int64, error) {
	b, err := io.ReadAll(r)
	n, _ := w.Write(b)
	return int64(n), err
}

type fzBothWriter struct{ *fzWriter }

func (w fzBothWriter) Flush()                              { fzFlushWriter(w).Flush() }
func (w fzBothWriter) ReadFrom(r io.Reader) (int64, error) { return fzReadFromWriter(w).ReadFrom(r) }

// The bytes of the handler's body, which no error response contains.
const (
	fzWriteByte    = "\x01"
	fzReadFromByte = "\x02"
)

// fzPanicValue is what the handler panics with.
type fzPanicValue struct{}

// fzOutcome is what a request produced, observed or simulated.
type fzOutcome struct {
	currents     []string // result of each Current action
	handCommit   string   // result of a hand commit
	created      bool
	commits      int
	rollbacks    int
	status       int
	infos        []int
	body         string
	flushes      int
	errResponse  bool   // the status and body came from the error handler
	panicked     string // "", "handler" or "writer"
	writeErrs    []string
	handlerHdrOK bool // the handler's header went out with the handler's status
	streamed     bool // (simulated) the response outgrew the buffer or was flushed
}

func fzServe(t *testing.T, c fzCase) {
	log := &testkit.Log{}
	var tx *fzTx
	txs := scoped.New(func(context.Context) (*fzTx, error) {
		if tx != nil {
			return nil, errors.New("fuzz: a second session in one request")
		}
		tx = &fzTx{log: log}
		if c.commitFails {
			tx.commitErr = errFzCommit
		}
		if c.rollbackFails {
			tx.rbErr = errFzRollback
		}
		log.Add("tx create")
		return tx, nil
	}, scoped.WithTeardownErrorHook(nil))

	opts := []scopedhttp.Option{scopedhttp.Bind(txs), scopedhttp.WithUncommittedHook(nil)}
	switch c.mode {
	case 1:
		opts = append(opts, scopedhttp.WithCommitMode(scopedhttp.Autocommit))
	case 2:
		opts = append(opts, scopedhttp.WithCommitMode(scopedhttp.AutocommitIncludeRedirect))
	case 3:
		opts = append(opts, scopedhttp.WithCommitPolicy(c.policy))
	}
	if c.small {
		opts = append(opts, scopedhttp.WithBufferLimit(fzLimit))
	}
	var handlerErr error
	if c.custom {
		opts = append(opts, scopedhttp.WithErrorHandler(func(w http.ResponseWriter, _ *http.Request, err error) {
			handlerErr = err
			for k := range w.Header() {
				delete(w.Header(), k)
			}
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, "ERR")
		}))
	}

	uw := &fzWriter{log: log, header: http.Header{}}
	var w http.ResponseWriter = uw
	switch {
	case c.flusher && c.readerFrom:
		w = fzBothWriter{uw}
	case c.flusher:
		w = fzFlushWriter{uw}
	case c.readerFrom:
		w = fzReadFromWriter{uw}
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	req := httptest.NewRequest(http.MethodPost, "/", nil).WithContext(ctx)

	got := fzOutcome{}
	var scope *scoped.Scope
	// settle waits, after the request's context ended, until the safety
	// net has rolled back a scope that holds a session: it runs on its own
	// goroutine, and the model says it has happened "at once".
	settle := func() {
		if ctx.Err() == nil || tx == nil {
			return
		}
		deadline := time.Now().Add(bound)
		for ev := log.List(); !slices.Contains(ev, "tx rollback") && !slices.Contains(ev, "tx commit"); ev = log.List() {
			if time.Now().After(deadline) {
				t.Fatalf("the safety net did not roll back a cancelled request's session within %v", bound)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, _ = scoped.FromContext(r.Context())
		_, isFlusher := w.(http.Flusher)
		_, isReaderFrom := w.(io.ReaderFrom)
		if isFlusher != c.flusher || isReaderFrom != c.readerFrom {
			t.Errorf("the wrapper offers Flusher=%v ReaderFrom=%v, the server's writer %v and %v", isFlusher, isReaderFrom, c.flusher, c.readerFrom)
		}
		for _, a := range c.actions {
			switch a.kind {
			case fzaCurrent:
				x, err := scoped.Current[*fzTx](r.Context())
				got.currents = append(got.currents, fzResult(x != nil, err))
				settle()
			case fzaHeader:
				w.Header().Set("Location", "/made/1") // a header of the intended response only
			case fzaWriteHeader:
				w.WriteHeader(a.code)
			case fzaWrite:
				_, err := w.Write([]byte(strings.Repeat(fzWriteByte, a.n)))
				got.writeErrs = append(got.writeErrs, fzErrName(err))
			case fzaFlush:
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
				} else if err := http.NewResponseController(w).Flush(); !errors.Is(err, http.ErrNotSupported) {
					t.Errorf("ResponseController.Flush without a Flusher = %v, want ErrNotSupported", err)
				}
			case fzaReadFrom:
				if rf, ok := w.(io.ReaderFrom); ok {
					_, err := rf.ReadFrom(strings.NewReader(strings.Repeat(fzReadFromByte, a.n)))
					got.writeErrs = append(got.writeErrs, fzErrName(err))
				}
			case fzaCancel:
				cause := context.Canceled
				if c.deadline {
					cause = context.DeadlineExceeded
				}
				cancel(cause)
				settle()
			case fzaCommit:
				if c.mode == 0 {
					got.handCommit = fzErrName(scope.Commit())
				}
			case fzaPanic:
				panic(fzPanicValue{})
			}
		}
	})

	func() {
		defer func() {
			switch p := recover().(type) {
			case nil:
			case fzPanicValue:
				got.panicked = "handler"
			case error:
				if p != http.ErrAbortHandler {
					t.Fatalf("unexpected panic %v", p)
				}
				got.panicked = "abort"
			case string:
				if strings.HasPrefix(p, "invalid WriteHeader code") {
					got.panicked = "writer"
					return
				}
				t.Fatalf("unexpected panic %q", p)
			default:
				t.Fatalf("unexpected panic %v (the middleware must re-panic with the handler's value)", p)
			}
		}()
		scopedhttp.Middleware(opts...)(h).ServeHTTP(w, req)
	}()

	if tx != nil {
		got.created, got.commits, got.rollbacks = true, tx.commits, tx.rollbacks
	}
	got.status, got.infos, got.body, got.flushes = uw.status, uw.infos, uw.body.String(), uw.flushes
	if uw.status != 0 {
		got.handlerHdrOK = uw.atStatus.Get("Location") != ""
	}
	events := log.List()
	want := fzSimulate(c)

	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\ncase: %v\nevents: %q\ngot  %+v\nwant %+v", fmt.Sprintf(format, args...), c, events, got, want)
	}

	// The invariants, on the record itself.
	if got.created && got.commits+got.rollbacks != 1 {
		fail("the session ended with %d commits and %d rollbacks, want exactly one of them", got.commits, got.rollbacks)
	}
	if i := slices.Index(events, "tx commit"); i >= 0 {
		if c.mode != 0 && !want.streamed {
			for _, e := range events[:i] {
				if strings.HasPrefix(e, "writer ") && !strings.HasPrefix(e, "writer info") {
					fail("a held response: committed after %q reached the server", e)
				}
			}
		}
		if c.mode == 0 && got.handCommit == "" {
			fail("Manual mode committed without the handler committing")
		}
		if c.commitFails && c.mode != 0 && got.panicked != "abort" && got.status >= 200 && got.status < 400 {
			fail("the commit failed but the client got %d, not aborted", got.status)
		}
	}
	if c.commitFails && got.commits > 0 && c.mode != 0 && got.panicked != "abort" {
		if strings.ContainsAny(got.body, fzWriteByte+fzReadFromByte) {
			fail("the handler's body went out after a failed commit: %q", got.body)
		}
		if got.handlerHdrOK {
			fail("the handler's header went out with the error response")
		}
	}
	if scope != nil && scope.Err() == nil {
		fail("the request's scope is still open after ServeHTTP")
	}
	if st := txs.Stats(); st.Live != 0 {
		fail("Stats().Live = %d after the request", st.Live)
	}
	if c.custom && want.errResponse && handlerErr == nil {
		fail("the custom error handler was not called")
	}

	// The reference simulation of the contract.
	if !slices.Equal(got.currents, want.currents) {
		fail("Current results %q, want %q", got.currents, want.currents)
	}
	if c.mode == 0 && got.handCommit != want.handCommit {
		fail("hand Commit = %s, want %s", got.handCommit, want.handCommit)
	}
	if got.created != want.created || got.commits != want.commits || got.rollbacks != want.rollbacks {
		fail("session: created=%v commits=%d rollbacks=%d, want %v %d %d", got.created, got.commits, got.rollbacks, want.created, want.commits, want.rollbacks)
	}
	if got.panicked != want.panicked {
		fail("panic %q, want %q", got.panicked, want.panicked)
	}
	if got.status != want.status || !slices.Equal(got.infos, want.infos) || got.flushes != want.flushes {
		fail("the server got status %d (1xx %v, %d flushes), want %d (%v, %d)", got.status, got.infos, got.flushes, want.status, want.infos, want.flushes)
	}
	if want.errResponse {
		wantBody := "ERR"
		if !c.custom {
			wantBody = "the request's changes were not saved"
		}
		if !strings.Contains(got.body, wantBody) || strings.ContainsAny(got.body, fzWriteByte+fzReadFromByte) {
			fail("error response body %q, want the error handler's (%q)", got.body, wantBody)
		}
		if got.handlerHdrOK {
			fail("the handler's Location header went out with the error response")
		}
	} else {
		if got.body != want.body {
			fail("body %q, want %q", got.body, want.body)
		}
		if want.handlerHdrOK != got.handlerHdrOK {
			fail("the handler's Location header went out: %v, want %v", got.handlerHdrOK, want.handlerHdrOK)
		}
	}
	if !slices.Equal(got.writeErrs, want.writeErrs) {
		fail("Write/ReadFrom errors %q, want %q", got.writeErrs, want.writeErrs)
	}
}

func fzResult(ok bool, err error) string {
	if err != nil {
		return fzErrName(err)
	}
	if !ok {
		return "nil session"
	}
	return "session"
}

func fzErrName(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, scoped.ErrScopeClosed):
		return "ErrScopeClosed"
	case errors.Is(err, errFzCommit):
		return "commit failed"
	case errors.Is(err, errFzRollback):
		return "rollback failed"
	}
	return "other: " + err.Error()
}

// fzSimulate is the contract of section 3 applied to c, with no code of
// the middleware: what the session, the handler and the server must see.
func fzSimulate(c fzCase) fzOutcome {
	var o fzOutcome
	auto := c.mode != 0
	limit := 1 << 20
	if c.small {
		limit = fzLimit
	}
	status := 0 // the final status the handler set
	held := ""  // the held body
	streaming := false
	scopeEnded, cancelled, hdr := false, false, false
	// out models the server's ResponseWriter receiving a status.
	out := func(code int) {
		if o.status != 0 {
			return
		}
		o.status = code
		o.handlerHdrOK = hdr
	}
	stream := func() {
		if !auto || streaming {
			return
		}
		streaming, o.streamed = true, true
		if status == 0 {
			status = http.StatusOK
		}
		out(status)
		o.body += held
		held = ""
	}
	// write is a Write or ReadFrom of s through the wrapper. A response
	// without a body (1xx, 204, 304; the requests are POSTs) is held
	// whatever is written: what does not fit is dropped, by a Write
	// whole, by a ReadFrom past the limit.
	write := func(s string, readFrom bool) {
		if status == 0 {
			status = http.StatusOK
			if !auto {
				out(status)
			}
		}
		o.writeErrs = append(o.writeErrs, "nil")
		if auto && !streaming {
			if len(held)+len(s) <= limit {
				held += s
				return
			}
			if fzBodyless(status) {
				if readFrom {
					held += s[:limit-len(held)]
				}
				return
			}
			stream()
		}
		if !auto && o.status == 0 {
			out(http.StatusOK)
		}
		o.body += s
	}
	// rollbackNow is the safety net: a cancelled request's session ends at once.
	rollbackNow := func() {
		if cancelled && o.created && !scopeEnded {
			scopeEnded = true
			o.rollbacks = 1
		}
	}
run:
	for _, a := range c.actions {
		switch a.kind {
		case fzaCurrent:
			if scopeEnded {
				o.currents = append(o.currents, "ErrScopeClosed")
			} else {
				o.created = true
				o.currents = append(o.currents, "session")
				rollbackNow()
			}
		case fzaHeader:
			hdr = true
		case fzaWriteHeader:
			code := a.code
			if status != 0 {
				continue // superfluous
			}
			if code < 100 || code > 999 {
				o.panicked = "writer"
				break run
			}
			if code < 200 && code != http.StatusSwitchingProtocols {
				o.infos = append(o.infos, code)
				continue
			}
			status = code
			if !auto {
				out(code)
			}
		case fzaWrite:
			write(strings.Repeat(fzWriteByte, a.n), false)
		case fzaReadFrom:
			if c.readerFrom {
				write(strings.Repeat(fzReadFromByte, a.n), true)
			}
		case fzaFlush:
			if c.flusher {
				if status == 0 {
					status = http.StatusOK
				}
				if auto && !streaming && fzBodyless(status) {
					continue // its status line alone is a complete answer: held
				}
				stream()
				out(status)
				o.flushes++
			}
		case fzaCancel:
			cancelled = true
			rollbackNow()
		case fzaCommit:
			if auto {
				continue
			}
			if scopeEnded {
				o.handCommit = "ErrScopeClosed"
				continue
			}
			scopeEnded = true
			o.handCommit = "nil"
			if o.created {
				o.commits = 1
				if c.commitFails {
					o.handCommit = "commit failed"
				}
			}
		case fzaPanic:
			o.panicked = "handler"
			break run
		}
	}
	if o.panicked == "" && auto {
		final := status
		if final == 0 {
			final = http.StatusOK
		}
		commit := c.policy(final)
		failed := false
		errStatus := http.StatusInternalServerError
		switch {
		case scopeEnded: // rolled back by the safety net
			failed = commit && cancelled
		case !commit:
		case cancelled && o.created:
			failed = true
		case o.created:
			o.commits = 1
			failed = c.commitFails
		}
		if failed && cancelled && c.deadline && !c.custom {
			errStatus = http.StatusServiceUnavailable
		}
		switch {
		case failed && streaming:
			o.panicked = "abort"
		case failed:
			o.errResponse = true
			o.status = errStatus
		case !streaming:
			if status != 0 {
				out(status)
			}
			o.body += held
		}
	}
	if o.created && o.commits == 0 {
		o.rollbacks = 1
	}
	if o.errResponse {
		o.body = "" // the error handler's, checked separately
	}
	return o
}

// fzBodyless reports whether a response with status has no body (1xx,
// 204, 304), which the middleware holds until the commit whatever the
// handler writes or flushes.
func fzBodyless(status int) bool {
	return status >= 100 && status < 200 || status == http.StatusNoContent || status == http.StatusNotModified
}
