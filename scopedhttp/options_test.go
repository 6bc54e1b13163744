package scopedhttp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

// Two ScopedSessions of one session type in one middleware: the panic
// names the type and the way out. The same ScopedSession twice is fine.
func TestTwoBindsOfOneSessionTypePanicAtConstruction(t *testing.T) {
	a, b := newFixture(), newFixture()
	func() {
		defer func() {
			msg, _ := recover().(string)
			if !strings.HasPrefix(msg, "scopedhttp: ") || !strings.Contains(msg, "*scopedhttp_test.fakeTx") ||
				!strings.Contains(msg, "own session type") || !strings.Contains(msg, "Current(ctx)") {
				t.Errorf("panic %q, want one naming the type and the way out", msg)
			}
		}()
		scopedhttp.Middleware(scopedhttp.Bind(a.reg), scopedhttp.Bind(b.reg))
	}()
	h := scopedhttp.Middleware(scopedhttp.Bind(a.reg), scopedhttp.Bind(a.reg), scopedhttp.WithCommitMode(scopedhttp.Autocommit))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { session(t, r) }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	a.wantEnded(t, "the same ScopedSession bound twice", 1, 0)
}

func TestBufferAndTimeoutOptionsRejectNonsense(t *testing.T) {
	for name, f := range map[string]func(){
		"WithBufferLimit(-1)": func() { scopedhttp.WithBufferLimit(-1) },
		"WithTimeout(0)":      func() { scopedhttp.WithTimeout(0) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if s, _ := recover().(string); !strings.HasPrefix(s, "scopedhttp: ") {
					t.Errorf("panic %q, want one with the package prefix", s)
				}
			}()
			f()
		})
	}
}

// Manual mode: a success answered over sessions the handler left
// uncommitted reaches the hook; a committed one, an error status and a
// request without sessions do not.
func TestUncommittedHookSeesSuccessOverRolledBackSessions(t *testing.T) {
	cases := []struct {
		name     string
		commit   bool
		status   int
		useTx    bool
		wantHook bool
	}{
		{"Forgot201", false, http.StatusCreated, true, true},
		{"ForgotImplicit200", false, 0, true, true},
		{"Forgot303", false, http.StatusSeeOther, true, true},
		{"Committed", true, http.StatusCreated, true, false},
		{"Error409", false, http.StatusConflict, true, false},
		{"NoSession", false, http.StatusOK, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fx := newFixture()
			var got []int
			h := fx.middleware(scopedhttp.WithUncommittedHook(func(r *http.Request, status int) {
				if r.URL.Path != "/items" {
					t.Errorf("hook got %q", r.URL.Path)
				}
				got = append(got, status)
			}))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.useTx {
					session(t, r)
				}
				if c.commit {
					if err := fx.reg.Commit(r.Context()); err != nil {
						t.Error(err)
					}
				}
				if c.status != 0 {
					w.WriteHeader(c.status)
				}
			}))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/items", nil))
			want := c.status
			if want == 0 {
				want = http.StatusOK
			}
			if c.wantHook && (len(got) != 1 || got[0] != want) {
				t.Errorf("hook got %v, want [%d]", got, want)
			}
			if !c.wantHook && len(got) != 0 {
				t.Errorf("hook got %v, want no call", got)
			}
		})
	}
}

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// captureLog points slog's default at a buffer for the test.
func captureLog(t *testing.T) *syncBuffer {
	buf := &syncBuffer{}
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return buf
}

// The default hook warns for a POST, and stays quiet for a GET that read
// in a transaction and let it roll back.
func TestUncommittedDefaultLogsOnlyChangingMethods(t *testing.T) {
	logs := captureLog(t)
	fx := newFixture()
	h := scopedhttp.Middleware(scopedhttp.Bind(fx.reg))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		session(t, r)
		w.WriteHeader(http.StatusOK)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/read", nil))
	if s := logs.String(); s != "" {
		t.Errorf("a GET was logged: %s", s)
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/write", nil))
	if s := logs.String(); !strings.Contains(s, "level=WARN") || !strings.Contains(s, "did not commit") || !strings.Contains(s, "path=/write") {
		t.Errorf("the forgotten commit of a POST was not logged: %q", s)
	}
}

// WithTimeout: a deadline that passes before the commit rolls back and
// answers 503 "not saved"; one that passes during the commit waits for it
// and answers the handler's 201.
func TestWithTimeoutIsCoordinatedWithTheCommit(t *testing.T) {
	t.Run("BeforeTheCommit", func(t *testing.T) {
		fx := newFixture()
		h, returned := returnedSignal(fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.WithTimeout(20*time.Millisecond))(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				session(t, r)
				<-r.Context().Done()
				w.WriteHeader(http.StatusCreated)
			})))
		ts := serve(t, h)
		res := do(context.Background(), ts, http.MethodPost, "/items")
		testkit.WaitFor(t, returned, "the handler to return")
		if res.err != nil || res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, "not saved") {
			t.Errorf("client got %d %q, %v; want 503 not saved", res.status, res.body, res.err)
		}
		fx.wantEnded(t, "timed out", 0, 1)
	})
	t.Run("DuringTheCommit", func(t *testing.T) {
		fx := newFixture()
		var reqCtx context.Context // set by the handler; the commit runs on its goroutine after it returns
		var ctxErr error
		fx.onCommit = func(*fakeTx) {
			select { // the commit outlasts the timeout
			case <-reqCtx.Done():
				ctxErr = reqCtx.Err()
			case <-time.After(bound):
			}
		}
		h, returned := returnedSignal(fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.WithTimeout(50*time.Millisecond))(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reqCtx = r.Context()
				session(t, r)
				w.WriteHeader(http.StatusCreated)
				_, _ = w.Write([]byte("created"))
			})))
		ts := serve(t, h)
		res := do(context.Background(), ts, http.MethodPost, "/items")
		testkit.WaitFor(t, returned, "the handler to return")
		if !errors.Is(ctxErr, context.DeadlineExceeded) {
			t.Fatalf("the timeout did not pass during the commit (%v): the test proves nothing", ctxErr)
		}
		if res.err != nil || res.status != http.StatusCreated || res.body != "created" {
			t.Errorf("client got %d %q, %v; want the committed 201", res.status, res.body, res.err)
		}
		fx.wantEnded(t, "committed while the timeout passed", 1, 0)
	})
}

// closeFailTx commits, then fails to close: the work is saved.
type outcomeTx struct {
	name      string
	commitErr error
	log       *testkit.Log
}

func (o *outcomeTx) Commit() error   { o.log.Add("commit %s", o.name); return o.commitErr }
func (o *outcomeTx) Rollback() error { o.log.Add("rollback %s", o.name); return nil }

type secondTx struct{ *outcomeTx }

// The answer says what became of the changes: each outcome of the core's
// Commit, produced by sessions whose commit or close fails.
func TestFailedCommitIsAnsweredByItsOutcome(t *testing.T) {
	errClose := errors.New("close failed")
	errLost := fmt.Errorf("connection lost during COMMIT: %w", scoped.ErrCommitUnknown)
	cases := []struct {
		name                string
		firstErr, secondErr error // commit errors; nil: commits
		closeErr            error // the first session's close
		wantStatus          int
		wantText            string
	}{
		{"NothingSaved", errCommit, nil, nil, 500, "were not saved"},
		{"PartiallySaved", nil, errCommit, nil, 500, "were partially saved"},
		{"OutcomeUnknown", errLost, nil, nil, 500, "may have been saved"},
		{"CommittedCloseFailed", nil, nil, errClose, 201, "created"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var log testkit.Log
			var hookErrs []error
			hook := scoped.WithTeardownErrorHook(func(_ context.Context, err error) { hookErrs = append(hookErrs, err) })
			first := scoped.New(func(context.Context) (*outcomeTx, error) {
				return &outcomeTx{name: "first", commitErr: c.firstErr, log: &log}, nil
			}, hook, scoped.WithClose(func(context.Context, *outcomeTx) error { return c.closeErr }))
			second := scoped.New(func(context.Context) (secondTx, error) {
				return secondTx{&outcomeTx{name: "second", commitErr: c.secondErr, log: &log}}, nil
			}, hook)
			h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(first), scopedhttp.Bind(second))(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if _, err := first.Current(r.Context()); err != nil {
						t.Fatal(err)
					}
					if _, err := second.Current(r.Context()); err != nil {
						t.Fatal(err)
					}
					w.WriteHeader(http.StatusCreated)
					_, _ = w.Write([]byte("created"))
				}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
			if rec.Code != c.wantStatus || !strings.Contains(rec.Body.String(), c.wantText) {
				t.Errorf("client got %d %q, want %d containing %q (events %q)", rec.Code, rec.Body.String(), c.wantStatus, c.wantText, log.List())
			}
			if c.wantStatus != 201 && strings.Contains(rec.Body.String(), "created") {
				t.Errorf("the error response has the handler's body")
			}
			if c.closeErr != nil && (len(hookErrs) == 0 || !errors.Is(hookErrs[0], errClose)) {
				t.Errorf("teardown hook got %v, want the close error", hookErrs)
			}
		})
	}
}

// grpcFrame is one gRPC-Web frame.
func grpcFrame(flag byte, data string) []byte {
	b := make([]byte, 5, 5+len(data))
	b[0] = flag
	binary.BigEndian.PutUint32(b[1:], uint32(len(data)))
	return append(b, data...)
}

// A gRPC or gRPC-Web response answers HTTP 200 whatever happened: the
// automatic modes decide it by Grpc-Status, never committing an RPC
// error, and roll back one whose status they cannot read.
func TestGRPCResponsesAreDecidedByGrpcStatus(t *testing.T) {
	cases := []struct {
		name       string
		serve      func(w http.ResponseWriter)
		wantCommit bool
		wantStatus int // what the client gets
		wantLog    bool
	}{
		{"TrailerOK", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Trailer", "Grpc-Status")
			_, _ = w.Write(grpcFrame(0, "reply"))
			w.Header().Set("Grpc-Status", "0")
		}, true, 200, false},
		{"TrailerFailedPrecondition", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/grpc+proto")
			w.Header().Set("Trailer", "Grpc-Status")
			_, _ = w.Write(grpcFrame(0, "reply"))
			w.Header().Set("Grpc-Status", "9")
		}, false, 200, false},
		{"TrailerPrefixError", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/grpc")
			_, _ = w.Write(grpcFrame(0, "reply"))
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", "13")
		}, false, 200, false},
		{"TrailersOnlyError", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "5")
			w.WriteHeader(http.StatusOK)
		}, false, 200, false},
		{"NoStatus", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/grpc")
			_, _ = w.Write(grpcFrame(0, "reply"))
		}, false, 200, true},
		{"WebOK", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/grpc-web+proto")
			_, _ = w.Write(grpcFrame(0, "reply"))
			_, _ = w.Write(grpcFrame(0x80, "grpc-status: 0\r\ngrpc-message: \r\n"))
		}, true, 200, false},
		{"WebError", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/grpc-web")
			_, _ = w.Write(grpcFrame(0, "reply"))
			_, _ = w.Write(grpcFrame(0x80, "grpc-status: 9\r\ngrpc-message: precondition\r\n"))
		}, false, 200, false},
		{"WebTextUnreadable", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/grpc-web-text")
			_, _ = w.Write([]byte("AAAAAAVyZXBseQ=="))
		}, false, 500, true},
		{"WebStreamedUnreadable", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/grpc-web")
			_, _ = w.Write(grpcFrame(0, "reply"))
			w.(http.Flusher).Flush()
			_, _ = w.Write(grpcFrame(0x80, "grpc-status: 0\r\n"))
		}, false, -1, true}, // -1: aborted
		{"PlainHTTPStill200", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Grpc-Status", "9") // not an RPC: ignored
			_, _ = w.Write([]byte("{}"))
		}, true, 200, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logs := captureLog(t)
			fx := newFixture()
			h, returned := returnedSignal(fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					session(t, r)
					c.serve(w)
				})))
			ts := serve(t, h)
			res := do(context.Background(), ts, http.MethodPost, "/pkg.Service/Method")
			testkit.WaitFor(t, returned, "the handler to return")
			switch {
			case c.wantStatus < 0:
				if res.err == nil {
					t.Errorf("client read a complete %d %q; want an aborted response", res.status, res.body)
				}
			case res.err != nil || res.status != c.wantStatus:
				t.Errorf("client got %d, %v; want %d", res.status, res.err, c.wantStatus)
			}
			if c.wantCommit {
				fx.wantEnded(t, c.name, 1, 0)
			} else {
				fx.wantEnded(t, c.name, 0, 1)
			}
			logged := strings.Contains(logs.String(), "scopedgrpc or scopedconnect")
			if logged != c.wantLog {
				t.Errorf("logged a pointer to the interceptors: %v, want %v (%q)", logged, c.wantLog, logs.String())
			}
		})
	}
}

// The pointer to the interceptors is logged once per middleware, not
// once per request.
func TestGRPCUnreadableIsLoggedOnce(t *testing.T) {
	logs := captureLog(t)
	fx := newFixture()
	h := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		session(t, r)
		w.Header().Set("Content-Type", "application/grpc-web-text")
		_, _ = w.Write([]byte("AAAA"))
	}))
	for range 3 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", nil))
	}
	if n := strings.Count(logs.String(), "scopedgrpc or scopedconnect"); n != 1 {
		t.Errorf("logged %d times, want once", n)
	}
	fx.wantEnded(t, "three unreadable RPCs", 0, 3)
}

// The steady state allocates nothing per request for the buffer: a
// 64 KiB response costs the allocations of a 2-byte one.
func TestHeldBufferIsPooled(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector; .ci/run runs this test without it")
	}
	reg := scoped.New(func(context.Context) (*benchTx, error) { return new(benchTx), nil })
	mw := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(reg))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	allocs := func(body []byte) float64 {
		h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
		w := &benchWriter{h: http.Header{}}
		h.ServeHTTP(w, req) // warm the pool
		return testing.AllocsPerRun(200, func() { w.code = 0; h.ServeHTTP(w, req) })
	}
	small, large := allocs([]byte("ok")), allocs(bytes.Repeat([]byte("x"), 64<<10))
	if large > small {
		t.Errorf("a 64 KiB response allocates %.1f times per request, a 2-byte one %.1f: the buffer is not pooled", large, small)
	}
}

// A client that goes away: sessions created WithoutSafetyNet (a pinned
// pgx connection, say) are not ended from another goroutine while the
// handler may still use them; they are rolled back when it returns.
func TestClientGoneLeavesWithoutSafetyNetSessionsToTheReturn(t *testing.T) {
	var log testkit.Log
	pinned := scoped.New(func(context.Context) (*outcomeTx, error) {
		return &outcomeTx{name: "pinned", log: &log}, nil
	}, scoped.WithoutSafetyNet())
	started, gone := make(chan struct{}), make(chan struct{})
	proceed := make(chan struct{})
	openProceed := release(t, proceed)
	h, returned := returnedSignal(scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := pinned.Current(r.Context()); err != nil {
				t.Error(err)
			}
			close(started)
			<-r.Context().Done()
			close(gone)
			<-proceed
			w.WriteHeader(http.StatusCreated)
		})))
	ts := serve(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	resc := make(chan response, 1)
	go func() { resc <- do(ctx, ts, http.MethodPost, "/") }()
	testkit.WaitFor(t, started, "the handler to start")
	cancel()
	testkit.WaitFor(t, resc, "the client to give up")
	testkit.WaitFor(t, gone, "the handler to see the client gone")
	time.Sleep(20 * time.Millisecond) // room for a wrong early teardown to show
	if ev := log.List(); len(ev) != 0 {
		t.Errorf("a WithoutSafetyNet session was ended while the handler ran: %q", ev)
	}
	openProceed()
	testkit.WaitFor(t, returned, "the handler to return")
	if ev := log.List(); len(ev) != 1 || ev[0] != "rollback pinned" {
		t.Errorf("events %q, want one rollback when the handler returned", ev)
	}
}

// 103 Early Hints goes out before the held response over HTTP/2 too.
func TestEarlyHintsOverHTTP2(t *testing.T) {
	fx := newFixture()
	h, returned := returnedSignal(fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			session(t, r)
			w.Header().Set("Link", "</app.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte("created"))
		})))
	ts := servers[1].start(t, h)
	var infos []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
		infos = append(infos, code)
		return nil
	}}
	res := do(httptrace.WithClientTrace(context.Background(), trace), ts, http.MethodPost, "/")
	testkit.WaitFor(t, returned, "the handler to return")
	if res.err != nil || res.status != http.StatusCreated || res.body != "created" {
		t.Errorf("client got %d %q, %v", res.status, res.body, res.err)
	}
	if len(infos) != 1 || infos[0] != http.StatusEarlyHints {
		t.Errorf("1xx responses %v, want [103]", infos)
	}
	fx.wantEnded(t, "201 over HTTP/2", 1, 0)
}

// An RPC that used no session has nothing to commit: even an unreadable
// gRPC-Web response goes out untouched, and nothing is logged.
func TestGRPCWithoutSessionIsLeftAlone(t *testing.T) {
	logs := captureLog(t)
	h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/grpc-web-text")
		_, _ = w.Write([]byte("AAAA"))
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "AAAA" || logs.String() != "" {
		t.Errorf("client got %d %q, log %q; want the handler's response untouched", rec.Code, rec.Body.String(), logs.String())
	}
}
