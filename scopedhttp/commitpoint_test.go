package scopedhttp_test

import (
	"bytes"
	"context"
	"errors"
	"io"
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

// commitTakes is how long the blocking commit of
// TestClientGetsStatusOnlyAfterCommitFinished holds the response back: the
// window in which a client that got the status early would be caught. It
// is not a timing assertion; the assertion is on the order of events.
const commitTakes = 150 * time.Millisecond

// A real server, a commit that blocks until the test releases it: the
// client must not see a byte of a held response before the commit has
// finished. Each handler would make the status leave the server early
// without the middleware (a body larger than the server's buffer, a
// status set first and statements run afterwards), so that an
// implementation committing after the status would be caught.
func TestClientGetsStatusOnlyAfterCommitFinished(t *testing.T) {
	handlers := []struct {
		name   string
		status int
		serve  func(w http.ResponseWriter)
	}{
		{"WriteHeaderThenWrite", http.StatusCreated, func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte("created"))
		}},
		{"WriteLargerThanServerBuffer", http.StatusOK, func(w http.ResponseWriter) {
			_, _ = w.Write(bytes.Repeat([]byte("x"), 64<<10))
		}},
		{"ReadFromLargerThanServerBuffer", http.StatusOK, func(w http.ResponseWriter) {
			_, _ = w.(io.ReaderFrom).ReadFrom(bytes.NewReader(bytes.Repeat([]byte("y"), 64<<10)))
		}},
		{"Implicit200", http.StatusOK, func(http.ResponseWriter) {}},
	}
	for _, hc := range handlers {
		t.Run(hc.name, func(t *testing.T) {
			fx := newFixture()
			entered := make(chan struct{})
			gate := make(chan struct{})
			var enterOnce sync.Once
			fx.onCommit = func(*fakeTx) {
				enterOnce.Do(func() { close(entered) })
				<-gate
			}
			h, returned := returnedSignal(fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					session(t, r)
					hc.serve(w)
				})))
			ts := serve(t, h)
			openGate := release(t, gate)

			firstByte := make(chan struct{})
			var byteOnce sync.Once
			trace := &httptrace.ClientTrace{GotFirstResponseByte: func() {
				fx.log.Add("client: first byte")
				byteOnce.Do(func() { close(firstByte) })
			}}
			resc := make(chan response, 1)
			go func() {
				resc <- do(httptrace.WithClientTrace(context.Background(), trace), ts, http.MethodPost, "/items")
			}()

			testkit.WaitFor(t, entered, "the commit to start")
			select {
			case <-firstByte:
				t.Errorf("the client received the response while the commit was still running")
			case <-time.After(commitTakes):
			}
			openGate()
			res := testkit.WaitFor(t, resc, "the response")
			testkit.WaitFor(t, returned, "the handler to return")

			if res.err != nil || res.status != hc.status {
				t.Fatalf("client got %d, %v; want %d", res.status, res.err, hc.status)
			}
			commit, got := fx.log.Index("commit 1"), fx.log.Index("client: first byte")
			if commit < 0 || got < commit {
				t.Errorf("events %q: the client's first byte must come after the commit finished", fx.log.List())
			}
			fx.wantEnded(t, "committed request", 1, 0)
		})
	}
}

// errNothingWritten marks a handler that wrote nothing, so had no write to fail.
var errNothingWritten = errors.New("the handler wrote nothing")

// A failing commit of a held response turns it into the error handler's
// 500, however the handler wrote it: the handler's writes succeeded (they
// were held), and none of its body or headers reach the client.
func TestFailedCommitSends500InsteadOfHandlersResponse(t *testing.T) {
	handlers := []struct {
		name  string
		serve func(w http.ResponseWriter) error // the error of the handler's first write, if any
	}{
		{"WriteHeader201ThenWrite", func(w http.ResponseWriter) error {
			w.WriteHeader(http.StatusCreated)
			w.WriteHeader(http.StatusCreated) // ignored, as net/http does
			n, err := w.Write([]byte("created"))
			if err == nil && n != len("created") {
				return errors.New("Write reported a short write")
			}
			return err
		}},
		{"WriteOnly", func(w http.ResponseWriter) error {
			_, err := w.Write([]byte("created"))
			return err
		}},
		{"ReadFrom", func(w http.ResponseWriter) error {
			_, err := w.(io.ReaderFrom).ReadFrom(strings.NewReader("created"))
			return err
		}},
		{"NothingWritten", func(http.ResponseWriter) error { return errNothingWritten }},
	}
	for _, hc := range handlers {
		t.Run(hc.name, func(t *testing.T) {
			fx := newFixture()
			fx.commitErr = errCommit
			writeErr := make(chan error, 1)
			h, returned := returnedSignal(fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					session(t, r)
					w.Header().Set("Location", "/items/1")
					w.Header().Set("ETag", `"v1"`)
					w.Header().Set("Content-Length", "7")
					w.Header().Set("X-Handler", "mine")
					http.SetCookie(w, &http.Cookie{Name: "created", Value: "1"})
					writeErr <- hc.serve(w)
				})))
			ts := serve(t, h)

			res := do(context.Background(), ts, http.MethodPost, "/items")
			testkit.WaitFor(t, returned, "the handler to return")

			if res.err != nil || res.status != http.StatusInternalServerError {
				t.Fatalf("client got %d, %v; want 500", res.status, res.err)
			}
			for _, k := range []string{"Location", "Etag", "Set-Cookie", "X-Handler"} {
				if v := res.header.Get(k); v != "" {
					t.Errorf("the 500 carries the handler's %s: %q", k, v)
				}
			}
			if strings.Contains(res.body, "created") {
				t.Errorf("the 500's body has the handler's body: %q", res.body)
			}
			if !strings.Contains(res.body, "not saved") {
				t.Errorf("body %q does not say the changes were not saved", res.body)
			}
			if err := <-writeErr; err != errNothingWritten && err != nil {
				t.Errorf("the handler's held write returned %v, want nil", err)
			}
			fx.wantEnded(t, "failed commit", 1, 0)
			if errs := fx.errs(); len(errs) != 1 || !errors.Is(errs[0], errCommit) {
				t.Errorf("teardown hook got %v, want the commit error", errs)
			}
		})
	}
}

func TestErrorHandlerAnswersFailedCommit(t *testing.T) {
	fx := newFixture()
	fx.commitErr = errCommit
	var got []error
	onError := func(w http.ResponseWriter, r *http.Request, err error) {
		got = append(got, err)
		if r.URL.Path != "/items" {
			t.Errorf("error handler got request for %q", r.URL.Path)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"error":"not saved"}`))
	}
	h := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.WithErrorHandler(onError))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			session(t, r)
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte("created"))
		}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/items", nil))

	if rec.Code != http.StatusConflict || rec.Body.String() != `{"error":"not saved"}` {
		t.Errorf("client got %d %q, want the error handler's 409", rec.Code, rec.Body.String())
	}
	if len(got) != 1 || !errors.Is(got[0], errCommit) {
		t.Errorf("error handler got %v, want one error wrapping the commit's", got)
	}
}

// A 103 Early Hints goes out at once and is not the commit point: the
// scope is still open after the client has received it, and the final 201
// commits.
func TestInformationalStatusIsNotTheCommitPoint(t *testing.T) {
	fx := newFixture()
	hintReceived := make(chan struct{})
	h, returned := returnedSignal(fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			first := session(t, r)
			w.Header().Set("Link", "</app.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			select {
			case <-hintReceived:
			case <-time.After(bound):
				t.Errorf("the client did not receive the 103")
				return
			}
			if c, rb := fx.ended(); c != 0 || rb != 0 {
				t.Errorf("after the 103: %d commit(s), %d rollback(s); want the scope still open", c, rb)
			}
			if again := session(t, r); again != first {
				t.Errorf("the session changed after the 103")
			}
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte("created"))
		})))
	ts := serve(t, h)

	var infos []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
		infos = append(infos, code)
		close(hintReceived)
		return nil
	}}
	res := do(httptrace.WithClientTrace(context.Background(), trace), ts, http.MethodPost, "/")
	testkit.WaitFor(t, returned, "the handler to return")

	if res.err != nil || res.status != http.StatusCreated {
		t.Fatalf("client got %d, %v; want 201", res.status, res.err)
	}
	if len(infos) != 1 || infos[0] != http.StatusEarlyHints {
		t.Errorf("client got informational responses %v, want [103]", infos)
	}
	fx.wantEnded(t, "201 after a 103", 1, 0)
}

// A deadline set by an outer middleware passes while the handler works:
// its 201 must not reach the client; the scope is rolled back and the
// client gets 503.
func TestDeadlinePassedBeforeCommitPointRollsBackAndSends503(t *testing.T) {
	fx := newFixture()
	var handlerErr []error
	onErrorSeen := func(w http.ResponseWriter, r *http.Request, err error) {
		handlerErr = append(handlerErr, err)
		scopedhttp.DefaultErrorHandler(w, r, err)
	}
	writeErr := make(chan error, 1)
	inner := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.WithErrorHandler(onErrorSeen))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			session(t, r)
			<-r.Context().Done() // the work outlasts the deadline
			w.Header().Set("Location", "/items/1")
			w.WriteHeader(http.StatusCreated)
			_, err := w.Write([]byte("created"))
			writeErr <- err
		}))
	withDeadline := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Millisecond)
		defer cancel()
		inner.ServeHTTP(w, r.WithContext(ctx))
	})
	h, returned := returnedSignal(withDeadline)
	ts := serve(t, h)

	res := do(context.Background(), ts, http.MethodPost, "/items")
	testkit.WaitFor(t, returned, "the handler to return")

	if res.err != nil || res.status != http.StatusServiceUnavailable {
		t.Fatalf("client got %d, %v; want 503", res.status, res.err)
	}
	if res.header.Get("Location") != "" || strings.Contains(res.body, "created") {
		t.Errorf("the 503 carries the handler's response: %v %q", res.header, res.body)
	}
	if err := <-writeErr; err != nil {
		t.Errorf("handler's held Write returned %v, want nil", err)
	}
	if len(handlerErr) != 1 || !errors.Is(handlerErr[0], context.DeadlineExceeded) || !errors.Is(handlerErr[0], scoped.ErrNotCommitted) {
		t.Errorf("error handler got %v, want one error wrapping context.DeadlineExceeded and scoped.ErrNotCommitted", handlerErr)
	}
	fx.wantEnded(t, "deadline passed", 0, 1)
}

// The client goes away while the handler works (real server, real
// connection closed): the handler's later 201 must not commit.
func TestClientDisconnectBeforeCommitPointRollsBack(t *testing.T) {
	for _, mode := range []scopedhttp.CommitMode{scopedhttp.Autocommit, scopedhttp.AutocommitIncludeRedirect} {
		t.Run("Mode="+mode.String(), func(t *testing.T) {
			fx := newFixture()
			started := make(chan struct{})
			writeErr := make(chan error, 1)
			h, returned := returnedSignal(fx.middleware(scopedhttp.WithCommitMode(mode))(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					session(t, r)
					close(started)
					<-r.Context().Done() // the server noticed the client left
					w.WriteHeader(http.StatusCreated)
					_, err := w.Write([]byte("created"))
					writeErr <- err
				})))
			ts := serve(t, h)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			resc := make(chan response, 1)
			go func() { resc <- do(ctx, ts, http.MethodPost, "/items") }()
			testkit.WaitFor(t, started, "the handler to start")
			cancel()
			if res := testkit.WaitFor(t, resc, "the client to give up"); res.err == nil {
				t.Errorf("client got a response (%d) after cancelling", res.status)
			}
			testkit.WaitFor(t, returned, "the handler to return")

			if err := <-writeErr; err != nil {
				t.Errorf("handler's held Write returned %v, want nil", err)
			}
			fx.wantEnded(t, "client gone", 0, 1)
		})
	}
}

// Headers that an outer middleware set before the request reached this
// one (a request id, CORS) describe the exchange, not the response the
// handler asked for: the error response keeps them and drops only the
// handler's.
func TestFailedCommitKeepsHeadersSetOutsideTheMiddleware(t *testing.T) {
	fx := newFixture()
	fx.commitErr = errCommit
	inner := fx.middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit))(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			session(t, r)
			w.Header().Set("Location", "/items/1")
			w.WriteHeader(http.StatusCreated)
		}))
	outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "req-1")
		w.Header().Set("Access-Control-Allow-Origin", "https://app.example")
		inner.ServeHTTP(w, r)
	})
	rec := httptest.NewRecorder()
	outer.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/items", nil))

	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("client got %d, want 500", rec.Code)
	}
	if v := rec.Header().Get("Location"); v != "" {
		t.Errorf("the 500 carries the handler's Location %q", v)
	}
	for _, k := range []string{"X-Request-Id", "Access-Control-Allow-Origin"} {
		if rec.Header().Get(k) == "" {
			t.Errorf("the 500 lost the outer middleware's %s", k)
		}
	}
}
