package scopedsql_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/go-scoped/scoped"
	"github.com/go-scoped/scoped/scopedsql"
)

func TestReplicaOptionsPanic(t *testing.T) {
	for name, f := range map[string]func(){
		"WithReplicas(nil)":       func() { scopedsql.WithReplicas(nil) },
		"WithMaxReplicaLag(0)":    func() { scopedsql.WithMaxReplicaLag(0) },
		"WithReplicaWait(-1)":     func() { scopedsql.WithReplicaWait(-1) },
		"ReadYourWrites(\"\")":    func() { scopedsql.ReadYourWrites("") },
		"ReadYourWrites(\"a b\")": func() { scopedsql.ReadYourWrites("a b") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		}()
	}
}

// TestReadYourWritesCookie: the cookie's position reaches the request's
// context; a request whose unit wrote sets the cookie to the position
// read after its commit; one that did not sets none; and a position that
// cannot be read fails no unit.
func TestReadYourWritesCookie(t *testing.T) {
	db, mock, err := sqlmock.New()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	txs := scopedsql.NewTx(db, nil)
	var seen scopedsql.Position
	h := scopedsql.ReadYourWrites("rp")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = scopedsql.CommitPosition(r.Context())
		if r.Method != http.MethodPost {
			return
		}
		err := scoped.Run(r.Context(), func(ctx context.Context) error {
			tx, err := txs.Current(ctx)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, "INSERT INTO t VALUES (1)")
			return err
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}))
	do := func(method, cookie string) *http.Response {
		req := httptest.NewRequest(method, "/", nil)
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: "rp", Value: cookie})
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Result()
	}

	mock.ExpectBegin()
	mock.ExpectExec("INSERT").WillReturnResult(sqlmock.NewResult(1, 1))
	mock.ExpectCommit()
	mock.ExpectQuery("pg_current_wal_insert_lsn").WillReturnRows(sqlmock.NewRows([]string{"lsn"}).AddRow("1/20"))
	res := do(http.MethodPost, "1/10")
	if c := res.Cookies(); res.StatusCode != http.StatusOK || seen.String() != "1/10" || len(c) != 1 || c[0].Value != "1/20" || !c[0].HttpOnly {
		t.Errorf("POST with cookie 1/10: status %d, context's position %s, cookies %v; want 200, 1/10, rp=1/20 HttpOnly", res.StatusCode, seen, c)
	}
	if res := do(http.MethodGet, "1/20"); seen.String() != "1/20" || len(res.Cookies()) != 0 {
		t.Errorf("GET with cookie 1/20: context's position %s, cookies %v; want 1/20 and none set", seen, res.Cookies())
	}
	if res := do(http.MethodGet, "garbage"); seen != 0 || len(res.Cookies()) != 0 {
		t.Errorf("GET with a cookie that is no position: context's position %s, cookies %v; want none", seen, res.Cookies())
	}

	mock.ExpectBegin()
	mock.ExpectExec("INSERT").WillReturnResult(sqlmock.NewResult(1, 1))
	mock.ExpectCommit()
	mock.ExpectQuery("pg_current_wal_insert_lsn").WillReturnError(errors.New("primary gone"))
	if res := do(http.MethodPost, "1/20"); res.StatusCode != http.StatusOK || len(res.Cookies()) != 0 {
		t.Errorf("POST whose position could not be read: status %d, cookies %v; want 200 and none set", res.StatusCode, res.Cookies())
	}
	if err := mock.ExpectationsWereMet(); err != nil {
		t.Error(err)
	}
}
