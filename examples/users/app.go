package main

import (
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedhttp"
	"github.com/go-scoped/scoped/scopedsql"
)

// newHandler serves the users API: one scoped transaction per request that
// asks for one, committed by the middleware when the status is 2xx.
func newHandler(db *sql.DB, st store, log *slog.Logger) http.Handler {
	txs := scoped.New(scopedsql.Tx(db, nil), scoped.WithName("users tx"))
	a := &app{st: st, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /users", a.create)
	mux.HandleFunc("GET /users/{id}", a.get)
	mux.HandleFunc("GET /users", a.list)
	mw := scopedhttp.Middleware(scopedhttp.WithCommitMode(scopedhttp.Autocommit), scopedhttp.Bind(txs))
	return mw(mux)
}

type app struct {
	st  store
	log *slog.Logger
}

func (a *app) create(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Username *string `json:"username"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || dec.More() {
		writeError(w, http.StatusBadRequest, "body must be a JSON object {\"username\": \"...\"}")
		return
	}
	if in.Username == nil || strings.TrimSpace(*in.Username) == "" || len(*in.Username) > 64 {
		writeError(w, http.StatusBadRequest, "username is required (1 to 64 characters)")
		return
	}
	tx, err := scoped.Current[*sql.Tx](r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	u, err := a.st.insert(r.Context(), tx, *in.Username)
	if errors.Is(err, errTaken) {
		writeError(w, http.StatusConflict, "username already taken")
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/users/"+strconv.FormatInt(u.ID, 10))
	writeJSON(w, http.StatusCreated, u)
}

func (a *app) get(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, "no such user")
		return
	}
	tx, err := scoped.Current[*sql.Tx](r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	u, err := a.st.get(r.Context(), tx, id)
	if errors.Is(err, sql.ErrNoRows) {
		writeError(w, http.StatusNotFound, "no such user")
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

func (a *app) list(w http.ResponseWriter, r *http.Request) {
	tx, err := scoped.Current[*sql.Tx](r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	users, err := a.st.list(r.Context(), tx)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, users)
}

// fail answers 500; the middleware rolls the transaction back.
func (a *app) fail(w http.ResponseWriter, r *http.Request, err error) {
	a.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	writeError(w, http.StatusInternalServerError, "internal error")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
