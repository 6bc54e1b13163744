package scopedhttp_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
)

// benchTx is a no-op session: what remains is the cost of carrying it.
type benchTx struct{ done bool }

func (t *benchTx) Commit() error   { t.done = true; return nil }
func (t *benchTx) Rollback() error { t.done = true; return nil }

// benchWriter is a reusable ResponseWriter with the optional interfaces
// of net/http's own (Flusher, Hijacker, ReaderFrom), so that the
// middleware wraps it as it wraps a real server's; it allocates nothing.
type benchWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *benchWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}
func (w *benchWriter) Flush() {}
func (w *benchWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, errors.New("bench: no connection")
}
func (w *benchWriter) ReadFrom(src io.Reader) (int64, error) { return io.Copy(io.Discard, src) }

type benchKey struct{}

// handWritten is the middleware users write by hand: it begins the
// transaction on every request, carries it in the request's context and
// commits when the handler returns (after the response was written, the
// very bug scopedhttp exists to avoid, but the cheapest form).
func handWritten(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx := new(benchTx)
		done := false
		defer func() {
			if !done {
				_ = tx.Rollback()
			}
		}()
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), benchKey{}, tx)))
		_ = tx.Commit()
		done = true
	})
}

// statusWriter is what a hand-written middleware needs to commit by
// status, as Autocommit does.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// handWrittenByStatus is handWritten plus a status-capturing wrapper, so
// that it commits only 2xx (still after the response was written).
func handWrittenByStatus(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx := new(benchTx)
		sw := &statusWriter{ResponseWriter: w}
		done := false
		defer func() {
			if !done {
				_ = tx.Rollback()
			}
		}()
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), benchKey{}, tx)))
		if sw.code == 0 || sw.code >= 200 && sw.code < 300 {
			_ = tx.Commit()
			done = true
		}
	})
}

// The response bodies of the benchmark: a small API answer, and 1 MiB,
// the default buffer limit, which the middleware still holds whole.
var bodies = []struct {
	name string
	b    []byte
}{
	{"small", []byte("ok")},
	{"1MiB", make([]byte, 1<<20)},
}

// BenchmarkMiddleware measures the per-request cost of the middleware in
// Autocommit mode, calling ServeHTTP directly, against hand-written
// middlewares that carry the same no-op session in the request's context.
// Body=small|1MiB is the response size. Used=true: the handler asks for the session (scoped.Current for
// scopedhttp, ctx.Value for the hand-written ones); Used=false: it does
// not (the hand-written ones still begin eagerly, as they do).
//
//	go test -run '^$' -bench BenchmarkMiddleware -benchmem -count 6 ./scopedhttp/
func BenchmarkMiddleware(b *testing.B) {
	reg := scoped.New(func(context.Context) (*benchTx, error) { return new(benchTx), nil })
	mw := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(reg))

	var body []byte
	handler := func(used bool, get func(*http.Request) *benchTx) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if used && get(r) == nil {
				panic("no session")
			}
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body)
		})
	}
	fromScoped := func(r *http.Request) *benchTx {
		tx, err := scoped.Current[*benchTx](r.Context())
		if err != nil {
			panic(err)
		}
		return tx
	}
	fromValue := func(r *http.Request) *benchTx {
		tx, _ := r.Context().Value(benchKey{}).(*benchTx)
		return tx
	}
	impls := []struct {
		name string
		h    func(used bool) http.Handler
	}{
		{"hand-written", func(used bool) http.Handler { return handWritten(handler(used, fromValue)) }},
		{"hand-written-by-status", func(used bool) http.Handler { return handWrittenByStatus(handler(used, fromValue)) }},
		{"scopedhttp", func(used bool) http.Handler { return mw(handler(used, fromScoped)) }},
	}

	// A request context like a server's: cancellable, with a few values.
	type serverKey struct{ name string }
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	base = context.WithValue(base, serverKey{"server"}, "srv")
	base = context.WithValue(base, serverKey{"local-addr"}, "127.0.0.1:8080")
	req := httptest.NewRequest(http.MethodPost, "/users", nil).WithContext(base)

	for _, bd := range bodies {
		body = bd.b
		for _, used := range []bool{true, false} {
			for _, parallel := range []bool{false, true} {
				for _, impl := range impls {
					h := impl.h(used)
					b.Run("Body="+bd.name+"/Used="+boolName(used)+"/Parallel="+boolName(parallel)+"/Impl="+impl.name, func(b *testing.B) {
						b.ReportAllocs()
						if !parallel {
							w := &benchWriter{h: http.Header{}}
							for b.Loop() {
								w.code = 0
								h.ServeHTTP(w, req)
							}
							return
						}
						b.RunParallel(func(pb *testing.PB) {
							w := &benchWriter{h: http.Header{}}
							for pb.Next() {
								w.code = 0
								h.ServeHTTP(w, req)
							}
						})
					})
				}
			}
		}
	}
}

func boolName(v bool) string {
	if v {
		return "true"
	}
	return "false"
}
