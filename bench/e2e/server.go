package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// queries are the endpoint's two statements on one table.
type queries struct {
	table  string
	rows   int
	read   string // SELECT n ... FOR UPDATE
	update string // UPDATE ... SET n = $2
}

func newQueries(table string, rows int) queries {
	return queries{
		table:  table,
		rows:   rows,
		read:   "SELECT n FROM " + table + " WHERE id = $1 FOR UPDATE",
		update: "UPDATE " + table + " SET n = $2 WHERE id = $1",
	}
}

// sqlTx is what the endpoint needs of a *sql.Tx.
type sqlTx interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// bump is the endpoint's work: read one row, write it back incremented.
func (q queries) bump(ctx context.Context, tx sqlTx, id int) (int64, error) {
	var n int64
	if err := tx.QueryRowContext(ctx, q.read, id).Scan(&n); err != nil {
		return 0, err
	}
	n++
	if _, err := tx.ExecContext(ctx, q.update, id, n); err != nil {
		return 0, err
	}
	return n, nil
}

// id reads the row id of a request, answering 400 if it has none.
func (q queries) id(w http.ResponseWriter, r *http.Request) (int, bool) {
	id, err := strconv.Atoi(r.URL.Query().Get("id"))
	if err != nil || id < 1 || id > q.rows {
		http.Error(w, "id must be between 1 and "+strconv.Itoa(q.rows), http.StatusBadRequest)
		return 0, false
	}
	return id, true
}

func writeN(w http.ResponseWriter, n int64) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(strconv.AppendInt(nil, n, 10))
}

func fail(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// health never touches the database.
func health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok"))
}

func mux(bump http.HandlerFunc) *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("POST /bump", bump)
	m.HandleFunc("GET /health", health)
	return m
}

// handWritten is variant A: the handler begins and ends its own
// transaction.
func handWritten(db *sql.DB, q queries) http.Handler {
	return mux(func(w http.ResponseWriter, r *http.Request) {
		id, ok := q.id(w, r)
		if !ok {
			return
		}
		ctx := r.Context()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			fail(w, err)
			return
		}
		defer func() { _ = tx.Rollback() }() // sql.ErrTxDone after Commit
		n, err := q.bump(ctx, tx, id)
		if err != nil {
			fail(w, err)
			return
		}
		if err := tx.Commit(); err != nil {
			fail(w, err)
			return
		}
		writeN(w, n)
	})
}

// scopedSQL is variants B and D: scopedhttp in Autocommit mode, the
// handler asking for the request's *sql.Tx.
func scopedSQL(db *sql.DB, q queries) http.Handler {
	reg := scoped.New(scopedsql.Tx(db, nil))
	mw := scopedhttp.Middleware(
		scopedhttp.WithCommitMode(scopedhttp.Autocommit),
		scopedhttp.Bind(reg),
	)
	return mw(mux(func(w http.ResponseWriter, r *http.Request) {
		id, ok := q.id(w, r)
		if !ok {
			return
		}
		ctx := r.Context()
		tx, err := scoped.Current[*sql.Tx](ctx)
		if err != nil {
			fail(w, err)
			return
		}
		n, err := q.bump(ctx, tx, id)
		if err != nil {
			fail(w, err) // a 500: Autocommit rolls back
			return
		}
		writeN(w, n) // the commit point: committed before the 200 leaves
	}))
}

type txKey struct{}

// eager is variant C: the common hand-rolled middleware that begins a
// transaction for every request, whether or not its handler uses it, and
// commits it after the handler returned a 2xx (before net/http flushes
// the buffered response, for a body this small).
func eager(db *sql.DB, q queries) http.Handler {
	next := mux(func(w http.ResponseWriter, r *http.Request) {
		id, ok := q.id(w, r)
		if !ok {
			return
		}
		ctx := r.Context()
		tx, ok := ctx.Value(txKey{}).(*sql.Tx)
		if !ok {
			fail(w, errors.New("no transaction in the request's context"))
			return
		}
		n, err := q.bump(ctx, tx, id)
		if err != nil {
			fail(w, err)
			return
		}
		writeN(w, n)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, err := db.BeginTx(r.Context(), nil)
		if err != nil {
			fail(w, err)
			return
		}
		defer func() { _ = tx.Rollback() }() // after an error status or a panic
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), txKey{}, tx)))
		if sw.status == 0 || sw.status >= 200 && sw.status < 300 {
			if err := tx.Commit(); err != nil && !sw.wrote {
				fail(w, err)
			}
		}
	})
}

// statusWriter records the status a handler sent.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// server is one variant's HTTP server on a loopback port.
type server struct {
	srv  *http.Server
	url  string
	done chan error
}

func startServer(h http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       time.Minute,
		},
		url:  "http://" + ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// close shuts the server down, waiting at most 5 s for requests in
// flight.
func (s *server) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(fmt.Errorf("shutdown %s: %w", s.url, err), s.srv.Close())
	}
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
