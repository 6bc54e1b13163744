package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/go-scoped/scoped/internal/dbtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// eachBackend runs f against SQLite (always) and against PostgreSQL and
// MariaDB when their DSNs are set, each with a table of its own.
func eachBackend(t *testing.T, f func(t *testing.T, db *sql.DB, st store)) {
	t.Run("sqlite", func(t *testing.T) {
		db, err := openDB(context.Background(), "sqlite",
			"file:"+filepath.Join(t.TempDir(), "users.db")+"?_pragma=busy_timeout(5000)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		st := store{driver: "sqlite", table: "users"}
		if err := st.createTable(context.Background(), db); err != nil {
			t.Fatal(err)
		}
		f(t, db, st)
	})
	servers := []struct {
		name string
		get  func(testing.TB) dbtest.Server
	}{{"postgres", dbtest.Postgres}, {"mysql", dbtest.MySQL}}
	for _, server := range servers {
		t.Run(server.name, func(t *testing.T) {
			s := server.get(t)
			db, err := openDB(context.Background(), s.Driver, s.DSN)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			st := store{driver: s.Driver, table: dbtest.Table("users")}
			if err := st.createTable(context.Background(), db); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _, _ = db.Exec("DROP TABLE " + st.table) })
			f(t, db, st)
		})
	}
}

type client struct {
	t    *testing.T
	base string
}

func (c client) do(method, path, body string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return res.StatusCode, b
}

func (c client) create(username string) (int, User) {
	c.t.Helper()
	code, b := c.do("POST", "/users", fmt.Sprintf(`{"username": %q}`, username))
	var u User
	if code == http.StatusCreated {
		if err := json.Unmarshal(b, &u); err != nil {
			c.t.Fatalf("POST /users: %v in %s", err, b)
		}
	}
	return code, u
}

func serve(t *testing.T, db *sql.DB, st store) client {
	srv := httptest.NewServer(newHandler(db, st, quiet))
	t.Cleanup(srv.Close)
	return client{t: t, base: srv.URL}
}

func TestUsersAPI(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *sql.DB, st store) {
		c := serve(t, db, st)

		code, ada := c.create("ada")
		if code != http.StatusCreated || ada.ID == 0 || ada.Username != "ada" {
			t.Fatalf("POST ada: %d %+v", code, ada)
		}
		if code, _ := c.create("ada"); code != http.StatusConflict {
			t.Errorf("POST ada again: %d, want 409", code)
		}
		code, bob := c.create("bob")
		if code != http.StatusCreated || bob.ID == ada.ID {
			t.Fatalf("POST bob: %d %+v", code, bob)
		}

		for _, body := range []string{``, `{}`, `{"username": ""}`, `{"username": "  "}`, `{"username": 7}`,
			`{"username": "x"`, `[]`, `{"username": "x", "admin": true}`, `{"username": "x"} {}`,
			`{"username": "` + strings.Repeat("x", 65) + `"}`} {
			if code, b := c.do("POST", "/users", body); code != http.StatusBadRequest {
				t.Errorf("POST %q: %d %s, want 400", body, code, b)
			}
		}

		code, b := c.do("GET", fmt.Sprintf("/users/%d", ada.ID), "")
		var got User
		if code != http.StatusOK || json.Unmarshal(b, &got) != nil || got != ada {
			t.Errorf("GET ada: %d %s, want 200 %+v", code, b, ada)
		}
		for _, path := range []string{fmt.Sprintf("/users/%d", bob.ID+1000), "/users/abc", "/users/-1"} {
			if code, _ := c.do("GET", path, ""); code != http.StatusNotFound {
				t.Errorf("GET %s: %d, want 404", path, code)
			}
		}

		code, b = c.do("GET", "/users", "")
		var all []User
		if code != http.StatusOK || json.Unmarshal(b, &all) != nil {
			t.Fatalf("GET /users: %d %s", code, b)
		}
		if want := []User{ada, bob}; fmt.Sprint(all) != fmt.Sprint(want) {
			t.Errorf("GET /users = %+v, want %+v", all, want)
		}
		if st := db.Stats(); st.InUse != 0 {
			t.Errorf("connections in use after the requests: %d", st.InUse)
		}
	})
}

func TestListIsAnEmptyArrayNotNull(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *sql.DB, st store) {
		code, b := serve(t, db, st).do("GET", "/users", "")
		if code != http.StatusOK || string(bytes.TrimSpace(b)) != "[]" {
			t.Errorf("GET /users on an empty table: %d %s, want 200 []", code, b)
		}
	})
}

// A username raced by many requests is created exactly once: one 201, the
// others 409, and the rolled-back requests leave no row behind.
func TestConcurrentCreatesOfOneUsernameYieldOneUser(t *testing.T) {
	eachBackend(t, func(t *testing.T, db *sql.DB, st store) {
		c := serve(t, db, st)
		const n = 16
		codes := make(chan int, 2*n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(2)
			go func() { defer wg.Done(); code, _ := c.create("grace"); codes <- code }()
			go func() { defer wg.Done(); code, _ := c.create(fmt.Sprintf("user%02d", i)); codes <- code }()
		}
		wg.Wait()
		close(codes)
		count := map[int]int{}
		for code := range codes {
			count[code]++
		}
		if count[http.StatusCreated] != n+1 || count[http.StatusConflict] != n-1 {
			t.Errorf("status counts %v, want %d×201 and %d×409", count, n+1, n-1)
		}
		var rows int
		if err := db.QueryRow("SELECT COUNT(*) FROM " + st.table).Scan(&rows); err != nil || rows != n+1 {
			t.Errorf("rows = %d (%v), want %d", rows, err, n+1)
		}
	})
}

// run serves until its context ends, shuts down gracefully, and the data
// is still there when it starts again on the same SQLite file.
func TestRunShutsDownGracefullyAndDataSurvivesRestart(t *testing.T) {
	dsn := "file:" + filepath.Join(t.TempDir(), "users.db") + "?_pragma=busy_timeout(5000)"
	start := func() (client, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		addr := make(chan string, 1)
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-dsn", dsn}, quiet, func(a string) { addr <- a })
		}()
		var base string
		select {
		case a := <-addr:
			base = "http://" + a
		case err := <-done:
			t.Fatalf("run: %v", err)
		}
		return client{t: t, base: base}, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run after shutdown: %v", err)
			}
		}
	}

	c, stop := start()
	code, u := c.create("lovelace")
	if code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	stop()
	http.DefaultClient.CloseIdleConnections()

	c, stop = start()
	defer stop()
	defer http.DefaultClient.CloseIdleConnections()
	code, b := c.do("GET", fmt.Sprintf("/users/%d", u.ID), "")
	if code != http.StatusOK || !strings.Contains(string(b), `"lovelace"`) {
		t.Errorf("after restart GET: %d %s", code, b)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-driver", "oracle"},
		{"-driver", "postgres"},
		{"-nope"},
	} {
		if err := run(context.Background(), args, quiet, nil); err == nil {
			t.Errorf("run %v: no error", args)
		}
	}
}
