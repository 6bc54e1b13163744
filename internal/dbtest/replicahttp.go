package dbtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"testing"
)

// RowHandler serves a row the replica tests read: a POST runs write, any
// other method runs read and answers "n onReplica", such as "1 false".
func RowHandler(write func(ctx context.Context) error, read func(ctx context.Context) (n int, onReplica bool, err error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		if r.Method == http.MethodPost {
			err = write(r.Context())
		} else {
			var n int
			var on bool
			n, on, err = read(r.Context())
			fmt.Fprintf(w, "%d %v", n, on)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
}

// ServeClients serves h for the test, and returns how to send it a
// request, as a client, and returns the response's body; and a client
// that keeps its cookies, as a browser does.
func ServeClients(t *testing.T, h http.Handler) (do func(c *http.Client, method string) string, client *http.Client) {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *http.Client, method string) string {
		req, err := http.NewRequestWithContext(Ctx(t), method, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s %v", method, res.StatusCode, body, err)
		}
		return string(body)
	}, &http.Client{Jar: jar}
}

// ReadsOwnWrite checks, with the replica applying commits late, that
// client, after a POST that writes the row the GETs read, reads it on the
// primary ("1 false"), and that another client reads the replica's stale
// row ("-1 true").
func ReadsOwnWrite(t *testing.T, do func(c *http.Client, method string) string, client *http.Client) {
	t.Helper()
	do(client, http.MethodPost)
	if got := do(client, http.MethodGet); got != "1 false" {
		t.Errorf("GET after the client's POST, with its cookie: %q, want the primary's \"1 false\"", got)
	}
	if got := do(&http.Client{}, http.MethodGet); got != "-1 true" {
		t.Errorf("GET of another client: %q, want the replica's stale \"-1 true\"", got)
	}
}
