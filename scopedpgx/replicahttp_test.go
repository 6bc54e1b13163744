package scopedpgx

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestReadYourWritesCookie: the position a request's commits reached
// comes back in the cookie, and the next request's units read after it;
// a request that committed no write sets no cookie.
func TestReadYourWritesCookie(t *testing.T) {
	var seen Position
	h := ReadYourWrites("rp")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = CommitPosition(r.Context())
		if r.Method == http.MethodPost {
			positionsOf(r.Context()).raise(seen + 0x100) // as a commit that wrote does
		}
		if r.URL.Query().Has("write") {
			_, _ = w.Write([]byte("ok"))
		}
	}))
	serve := func(method, target string, cookies ...*http.Cookie) *http.Response {
		r := httptest.NewRequest(method, target, nil)
		for _, c := range cookies {
			r.AddCookie(c)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Result()
	}
	for _, target := range []string{"/", "/?write"} { // the handler writes nothing, or a body
		res := serve(http.MethodPost, target, &http.Cookie{Name: "rp", Value: "1/FFFFFF00"})
		if seen != 0x1_FFFFFF00 {
			t.Fatalf("%s: the request read after %s, want 1/FFFFFF00", target, seen)
		}
		cs := res.Cookies()
		if len(cs) != 1 || cs[0].Name != "rp" || cs[0].Value != "2/0" || !cs[0].HttpOnly || cs[0].Path != "/" {
			t.Fatalf("%s: cookies %v, want rp=2/0, HttpOnly, Path=/", target, cs)
		}
		if res := serve(http.MethodGet, target, cs[0]); seen != 0x2_00000000 || len(res.Cookies()) != 0 {
			t.Fatalf("%s: next request read after %s and set %v, want 2/0 and no cookie", target, seen, res.Cookies())
		}
	}
	if serve(http.MethodGet, "/", &http.Cookie{Name: "rp", Value: "junk"}); seen != 0 {
		t.Errorf("a cookie that is not a position read after %s, want none", seen)
	}
}

func TestPositionString(t *testing.T) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"} {
		p, err := ParsePosition(s)
		if err != nil || p.String() != s {
			t.Errorf("ParsePosition(%q) = %v, %v; String %q", s, uint64(p), err, p.String())
		}
	}
	for _, s := range []string{"", "16", "/1", "1/", "g/1", "123456789/0", "1/-1"} {
		if _, err := ParsePosition(s); err == nil {
			t.Errorf("ParsePosition(%q): no error", s)
		}
	}
}
