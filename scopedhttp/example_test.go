package scopedhttp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
)

// exampleTx stands for a *sql.Tx: scoped commits and rolls back anything
// with Commit() error and Rollback() error.
type exampleTx struct{ name string }

func (tx *exampleTx) Commit() error   { fmt.Println("  commit", tx.name); return nil }
func (tx *exampleTx) Rollback() error { fmt.Println("  rollback", tx.name); return nil }

// newExampleTxs returns a ScopedSession that begins a transaction named
// after the request's path, as db.BeginTx would.
func newExampleTxs() *scoped.ScopedSession[*exampleTx] {
	return scoped.New(func(ctx context.Context) (*exampleTx, error) {
		name := ctx.Value(pathKey{}).(string)
		fmt.Println("  begin", name)
		return &exampleTx{name: name}, nil
	})
}

type pathKey struct{}

// withPath puts the request path in the context, for newExampleTxs.
func withPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), pathKey{}, r.URL.Path)))
	})
}

// In Autocommit mode the middleware commits when the handler's status is
// 2xx and rolls back otherwise, before the status is sent.
func ExampleMiddleware_autocommit() {
	users := newExampleTxs()
	mw := scopedhttp.Middleware(
		scopedhttp.WithCommitMode(scopedhttp.Autocommit),
		scopedhttp.Bind(users),
	)
	h := withPath(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, err := scoped.Current[*exampleTx](r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_ = tx // INSERT INTO users ...
		if strings.HasSuffix(r.URL.Path, "/taken") {
			w.WriteHeader(http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})))

	for _, path := range []string{"/users/ann", "/users/taken"} {
		fmt.Println("POST", path)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, nil))
		fmt.Println(" ", rec.Code)
	}
	// Output:
	// POST /users/ann
	//   begin /users/ann
	//   commit /users/ann
	//   201
	// POST /users/taken
	//   begin /users/taken
	//   rollback /users/taken
	//   409
}

// In Manual mode (the default) nothing is committed unless the handler
// commits; the rest is rolled back when the handler returns. A request
// that never asks for a session begins no transaction.
func ExampleMiddleware_manual() {
	users := newExampleTxs()
	mw := scopedhttp.Middleware(scopedhttp.Bind(users))
	h := withPath(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte("no database needed"))
			return
		}
		if _, err := users.Current(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// UPDATE ...; the handler decides:
		if strings.HasSuffix(r.URL.Path, "/keep") {
			if err := users.Commit(r.Context()); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		w.WriteHeader(http.StatusOK)
	})))

	for _, req := range []struct{ method, path string }{
		{http.MethodPut, "/users/keep"},
		{http.MethodPut, "/users/dry-run"},
		{http.MethodGet, "/users"},
	} {
		fmt.Println(req.method, req.path)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(req.method, req.path, nil))
		fmt.Println(" ", rec.Code)
	}
	// Output:
	// PUT /users/keep
	//   begin /users/keep
	//   commit /users/keep
	//   200
	// PUT /users/dry-run
	//   begin /users/dry-run
	//   rollback /users/dry-run
	//   200
	// GET /users
	//   200
}

// failingTx's commit fails, as a serialization failure would.
type failingTx struct{}

func (failingTx) Commit() error   { return errors.New("could not serialize access") }
func (failingTx) Rollback() error { return nil }

// When the commit fails, the client gets the error handler's answer
// instead of the 201 the handler asked for: the handler's response was
// held until the commit, and none of it is sent.
func ExampleWithErrorHandler() {
	txs := scoped.New(func(context.Context) (failingTx, error) { return failingTx{}, nil },
		scoped.WithTeardownErrorHook(nil))
	mw := scopedhttp.Middleware(
		scopedhttp.WithCommitMode(scopedhttp.Autocommit),
		scopedhttp.Bind(txs),
		scopedhttp.WithErrorHandler(func(w http.ResponseWriter, _ *http.Request, err error) {
			fmt.Println("error handler: nothing saved:", errors.Is(err, scoped.ErrNotCommitted))
			http.Error(w, "try again", http.StatusInternalServerError)
		}),
	)
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = scoped.Current[failingTx](r.Context())
		w.Header().Set("Location", "/items/1")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte("created"))
		fmt.Println("handler returns")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	fmt.Printf("%d %q Location=%q\n", rec.Code, rec.Body.String(), rec.Header().Get("Location"))
	// Output:
	// handler returns
	// error handler: nothing saved: true
	// 500 "try again\n" Location=""
}

// Server-sent events: a stream that lasts as long as the client listens
// cannot wait for the commit at its end. The handler commits by hand
// first, then streams; the middleware, finding the scope ended, has
// nothing left to decide.
func ExampleMiddleware_serverSentEvents() {
	txs := newExampleTxs()
	mw := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))
	h := withPath(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := txs.Current(r.Context()); err != nil { // INSERT INTO subscriptions ...
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := txs.Commit(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range 3 {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			_ = rc.Flush() // streams: the client reads each event as it is sent
		}
	})))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/events", nil))
	fmt.Print(rec.Code, " ", rec.Header().Get("Content-Type"), "\n", rec.Body.String())
	// Output:
	//   begin /events
	//   commit /events
	// 200 text/event-stream
	// data: event 0
	//
	// data: event 1
	//
	// data: event 2
}
