package scopedhttp_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/internal/testkit"
	"github.com/go-scoped/scoped/scopedhttp"
)

// Parts that give a spyWriter one optional interface each; the table of
// TestWrapperOffersExactlyTheUnderlyingOptionalInterfaces combines them.
type (
	flushPart    struct{ s *spyWriter }
	hijackPart   struct{ s *spyWriter }
	readFromPart struct{ s *spyWriter }
)

func (p flushPart) Flush() {}

func (p hijackPart) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, errors.New("spy: no connection")
}

func (p readFromPart) ReadFrom(src io.Reader) (int64, error) { return io.Copy(io.Discard, src) }

func TestWrapperOffersExactlyTheUnderlyingOptionalInterfaces(t *testing.T) {
	s := newSpy()
	f, h, rf := flushPart{s}, hijackPart{s}, readFromPart{s}
	writers := []http.ResponseWriter{
		s,
		struct {
			*spyWriter
			flushPart
		}{s, f},
		struct {
			*spyWriter
			hijackPart
		}{s, h},
		struct {
			*spyWriter
			readFromPart
		}{s, rf},
		struct {
			*spyWriter
			flushPart
			hijackPart
		}{s, f, h},
		struct {
			*spyWriter
			flushPart
			readFromPart
		}{s, f, rf},
		struct {
			*spyWriter
			hijackPart
			readFromPart
		}{s, h, rf},
		struct {
			*spyWriter
			flushPart
			hijackPart
			readFromPart
		}{s, f, h, rf},
		httptest.NewRecorder(),
	}
	for _, under := range writers {
		_, wantF := under.(http.Flusher)
		_, wantH := under.(http.Hijacker)
		_, wantRF := under.(io.ReaderFrom)
		name := fmt.Sprintf("Flusher=%v/Hijacker=%v/ReaderFrom=%v", wantF, wantH, wantRF)
		if _, ok := under.(*httptest.ResponseRecorder); ok {
			name = "ResponseRecorder"
		}
		t.Run(name, func(t *testing.T) {
			ran := false
			h := scopedhttp.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				ran = true
				_, f := w.(http.Flusher)
				_, h := w.(http.Hijacker)
				_, rf := w.(io.ReaderFrom)
				if f != wantF || h != wantH || rf != wantRF {
					t.Errorf("wrapper: Flusher=%v Hijacker=%v ReaderFrom=%v; underlying: %v %v %v", f, h, rf, wantF, wantH, wantRF)
				}
				u, ok := w.(interface{ Unwrap() http.ResponseWriter })
				if !ok {
					t.Fatalf("wrapper has no Unwrap")
				}
				if u.Unwrap() != under {
					t.Errorf("Unwrap returned %T, not the server's writer", u.Unwrap())
				}
			}))
			h.ServeHTTP(under, httptest.NewRequest(http.MethodGet, "/", nil))
			if !ran {
				t.Fatal("handler did not run")
			}
		})
	}
}

// A flush sends the status and what is held at once (the response
// streams), and the commit waits for the handler's return.
func TestFlushStreamsAndCommitsWhenTheHandlerReturns(t *testing.T) {
	flushes := []struct {
		name  string
		flush func(t *testing.T, w http.ResponseWriter)
	}{
		{"http.Flusher", func(t *testing.T, w http.ResponseWriter) {
			f, ok := w.(http.Flusher)
			if !ok {
				t.Fatalf("wrapper of a ResponseRecorder is not an http.Flusher")
			}
			f.Flush()
		}},
		{"ResponseController", func(t *testing.T, w http.ResponseWriter) {
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("ResponseController.Flush: %v", err)
			}
		}},
	}
	for _, fl := range flushes {
		t.Run(fl.name, func(t *testing.T) {
			fx := newFixture()
			rec := httptest.NewRecorder()
			h := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(
				func(w http.ResponseWriter, r *http.Request) {
					session(t, r)
					w.Header().Set("Content-Length", "13")
					_, _ = w.Write([]byte("held "))
					fl.flush(t, w)
					if !rec.Flushed || rec.Body.String() != "held " {
						t.Errorf("the flush did not send the held body: flushed %v, body %q", rec.Flushed, rec.Body.String())
					}
					if v := rec.Header().Get("Content-Length"); v != "" {
						t.Errorf("a streaming response keeps Content-Length %q: the client could read it whole before the commit", v)
					}
					fx.wantEnded(t, "right after the flush", 0, 0)
					_, _ = w.Write([]byte("streamed"))
				}))
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			if rec.Code != http.StatusOK || rec.Body.String() != "held streamed" {
				t.Errorf("client got %d %q", rec.Code, rec.Body.String())
			}
			fx.wantEnded(t, "after the request", 1, 0)
		})
	}
}

// rawResponse is what hijacking handlers write on the connection.
const rawResponse = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked"

func TestHijackThroughWrapperEndsScopeWithRollbackUnlessHandlerCommitted(t *testing.T) {
	hijackers := map[string]func(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error){
		"http.Hijacker": func(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
			h, ok := w.(http.Hijacker)
			if !ok {
				return nil, nil, errors.New("wrapper of a real server's writer is not an http.Hijacker")
			}
			return h.Hijack()
		},
		"ResponseController": func(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
			return http.NewResponseController(w).Hijack()
		},
	}
	cases := []struct {
		mode         scopedhttp.CommitMode
		commitFirst  bool // the handler commits before hijacking
		wantC, wantR int
	}{
		{scopedhttp.Autocommit, false, 0, 1},
		{scopedhttp.AutocommitIncludeRedirect, false, 0, 1},
		{scopedhttp.Manual, false, 0, 1},
		{scopedhttp.Manual, true, 1, 0},
	}
	for via, hijack := range hijackers {
		for _, c := range cases {
			t.Run(fmt.Sprintf("Via=%s/Mode=%v/CommitFirst=%v", via, c.mode, c.commitFirst), func(t *testing.T) {
				fx := newFixture()
				h, returned := returnedSignal(fx.middleware(scopedhttp.WithCommitMode(c.mode))(http.HandlerFunc(
					func(w http.ResponseWriter, r *http.Request) {
						session(t, r)
						if c.commitFirst {
							if err := fx.reg.Commit(r.Context()); err != nil {
								t.Errorf("commit: %v", err)
							}
						}
						conn, brw, err := hijack(w)
						if err != nil {
							t.Errorf("hijack: %v", err)
							return
						}
						defer conn.Close()
						if c.mode != scopedhttp.Manual {
							// The automatic modes end the scope at the hijack.
							fx.wantEnded(t, "right after the hijack", 0, 1)
							if _, err := fx.reg.Current(r.Context()); !errors.Is(err, scoped.ErrScopeClosed) {
								t.Errorf("Current after the hijack: %v, want ErrScopeClosed", err)
							}
						}
						// A status through the wrapper now must not be
						// mistaken for a commit point.
						w.WriteHeader(http.StatusOK)
						_, _ = brw.WriteString(rawResponse)
						if err := brw.Flush(); err != nil {
							t.Errorf("writing on the hijacked connection: %v", err)
						}
					})))
				ts := serve(t, h)

				res := do(context.Background(), ts, http.MethodGet, "/ws")
				testkit.WaitFor(t, returned, "the handler to return")
				if res.err != nil || res.status != http.StatusOK || res.body != "hijacked" {
					t.Errorf("client got %d %q, %v; want the hijacker's 200", res.status, res.body, res.err)
				}
				fx.wantEnded(t, "hijacked request", c.wantC, c.wantR)
			})
		}
	}
}

func TestHijackNotOfferedWithoutUnderlyingHijacker(t *testing.T) {
	h := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(
		func(w http.ResponseWriter, _ *http.Request) {
			if _, ok := w.(http.Hijacker); ok {
				t.Errorf("wrapper of a ResponseRecorder claims http.Hijacker")
			}
			if _, _, err := http.NewResponseController(w).Hijack(); !errors.Is(err, http.ErrNotSupported) {
				t.Errorf("ResponseController.Hijack: %v, want ErrNotSupported", err)
			}
		}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
}

// firstReadProbe is a body source that records the session's state when
// the server first reads from it.
type firstReadProbe struct {
	src               io.Reader
	fx                *fixture
	read              bool
	commits, rollback int
}

func (p *firstReadProbe) Read(b []byte) (int, error) {
	if !p.read {
		p.read = true
		p.commits, p.rollback = p.fx.ended()
	}
	return p.src.Read(b)
}

// A body copied with ReadFrom is held like one written: the server's
// writer gets it, and the client its first byte, only after the commit.
func TestReadFromThroughWrapperIsHeldUntilTheCommit(t *testing.T) {
	copies := map[string]func(t *testing.T, w http.ResponseWriter, src io.Reader){
		"io.ReaderFrom": func(t *testing.T, w http.ResponseWriter, src io.Reader) {
			rf, ok := w.(io.ReaderFrom)
			if !ok {
				t.Errorf("wrapper of a real server's writer is not an io.ReaderFrom")
				return
			}
			if _, err := rf.ReadFrom(src); err != nil {
				t.Errorf("ReadFrom: %v", err)
			}
		},
		"io.Copy": func(t *testing.T, w http.ResponseWriter, src io.Reader) {
			if _, err := io.Copy(w, src); err != nil {
				t.Errorf("io.Copy: %v", err)
			}
		},
	}
	for name, copyBody := range copies {
		t.Run(name, func(t *testing.T) {
			fx := newFixture()
			var probe *firstReadProbe
			h, returned := returnedSignal(fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(
				func(w http.ResponseWriter, r *http.Request) {
					session(t, r)
					probe = &firstReadProbe{src: strings.NewReader("file contents"), fx: fx}
					copyBody(t, w, probe)
				})))
			ts := serve(t, h)

			res := do(context.Background(), ts, http.MethodGet, "/file")
			testkit.WaitFor(t, returned, "the handler to return")
			if res.err != nil || res.status != http.StatusOK || res.body != "file contents" {
				t.Errorf("client got %d %q, %v", res.status, res.body, res.err)
			}
			if probe.commits != 0 || probe.rollback != 0 {
				t.Errorf("at the first read of the body: %d commit(s), %d rollback(s); want the scope still open", probe.commits, probe.rollback)
			}
			fx.wantEnded(t, "after the request", 1, 0)
		})
	}
}

// Once a body outgrows the buffer, ReadFrom reaches the server's own (and
// its sendfile) for the rest.
func TestReadFromPastTheLimitIsPassedToUnderlyingWriter(t *testing.T) {
	fx := newFixture()
	under := &readerFromSpy{spyWriter: newSpy()}
	h := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.WithBufferLimit(2))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			session(t, r)
			if _, err := w.(io.ReaderFrom).ReadFrom(strings.NewReader("body")); err != nil {
				t.Errorf("ReadFrom: %v", err)
			}
		}))
	h.ServeHTTP(under, httptest.NewRequest(http.MethodGet, "/", nil))
	if under.readFrom != 1 || string(under.body) != "body" || under.code != http.StatusOK {
		t.Errorf("underlying ReadFrom called %d times, body %q, status %d", under.readFrom, under.body, under.code)
	}
	fx.wantEnded(t, "ReadFrom", 1, 0)
}

// http.ResponseController reaches what the wrapper does not intercept
// (deadlines, full duplex) through Unwrap.
func TestResponseControllerReachesServerThroughUnwrap(t *testing.T) {
	fx := newFixture()
	h, returned := returnedSignal(fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			rc := http.NewResponseController(w)
			deadline := time.Now().Add(time.Minute)
			if err := rc.SetWriteDeadline(deadline); err != nil {
				t.Errorf("SetWriteDeadline: %v", err)
			}
			if err := rc.SetReadDeadline(deadline); err != nil {
				t.Errorf("SetReadDeadline: %v", err)
			}
			if err := rc.EnableFullDuplex(); err != nil {
				t.Errorf("EnableFullDuplex: %v", err)
			}
			session(t, r)
			w.WriteHeader(http.StatusNoContent)
		})))
	ts := serve(t, h)
	res := do(context.Background(), ts, http.MethodGet, "/")
	testkit.WaitFor(t, returned, "the handler to return")
	if res.err != nil || res.status != http.StatusNoContent {
		t.Errorf("client got %d, %v", res.status, res.err)
	}
	fx.wantEnded(t, "after the request", 1, 0)

	// Without a server connection, the same calls say so.
	h = scopedhttp.Middleware()(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err := http.NewResponseController(w).SetWriteDeadline(time.Time{}); !errors.Is(err, http.ErrNotSupported) {
			t.Errorf("SetWriteDeadline on a ResponseRecorder: %v, want ErrNotSupported", err)
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
}

// unwrapOnly is the kind of ResponseWriter wrapper Go 1.20 made common: a
// logging or metrics middleware that implements only the basic methods
// plus Unwrap, leaving Flush and Hijack to http.ResponseController.
type unwrapOnly struct{ http.ResponseWriter }

func (u unwrapOnly) Unwrap() http.ResponseWriter { return u.ResponseWriter }

func outerUnwrapOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(unwrapOnly{w}, r)
	})
}

// Behind an Unwrap-only wrapper, a handler's http.ResponseController
// Flush must still reach this middleware's writer, not the server's past
// it: then the response streams knowingly, and a failing commit breaks it
// instead of letting a complete 200 out.
func TestResponseControllerFlushBehindUnwrapOnlyWriterStreamsThroughTheWrapper(t *testing.T) {
	for _, commitErr := range []error{nil, errCommit} {
		t.Run(fmt.Sprintf("CommitFails=%v", commitErr != nil), func(t *testing.T) {
			fx := newFixture()
			fx.commitErr = commitErr
			h, returned := returnedSignal(outerUnwrapOnly(fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					session(t, r)
					if err := http.NewResponseController(w).Flush(); err != nil {
						t.Errorf("ResponseController.Flush: %v", err)
					}
					fx.wantEnded(t, "when ResponseController.Flush returned", 0, 0)
					_, _ = w.Write([]byte("streamed"))
				}))))
			ts := serve(t, h)
			res := do(context.Background(), ts, http.MethodGet, "/events")
			testkit.WaitFor(t, returned, "the handler to return")
			if commitErr == nil && (res.err != nil || res.status != http.StatusOK || res.body != "streamed") {
				t.Errorf("client got %d %q, %v; want 200 \"streamed\"", res.status, res.body, res.err)
			}
			if commitErr != nil && res.err == nil {
				t.Errorf("client read a complete %d %q for a failed commit; want a broken response", res.status, res.body)
			}
			fx.wantEnded(t, "after the request", 1, 0)
		})
	}
}

// Behind an Unwrap-only wrapper, a hijack through http.ResponseController
// must still end the scope with a rollback, never a commit.
func TestResponseControllerHijackBehindUnwrapOnlyWriterRollsBack(t *testing.T) {
	fx := newFixture()
	h, returned := returnedSignal(outerUnwrapOnly(fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			session(t, r)
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("ResponseController.Hijack: %v", err)
				return
			}
			defer conn.Close()
			_, _ = brw.WriteString(rawResponse)
			_ = brw.Flush()
		}))))
	ts := serve(t, h)
	res := do(context.Background(), ts, http.MethodGet, "/ws")
	testkit.WaitFor(t, returned, "the handler to return")
	if res.err != nil || res.body != "hijacked" {
		t.Errorf("client got %d %q, %v", res.status, res.body, res.err)
	}
	fx.wantEnded(t, "hijacked request", 0, 1)
}
