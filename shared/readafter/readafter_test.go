package readafter

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestPositionText(t *testing.T) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "0/3000060"} {
		p, err := Parse(s)
		if err != nil || p.String() != s {
			t.Errorf("Parse(%q) = %s, %v; want it back", s, p, err)
		}
	}
	for _, s := range []string{"", "16", "/1", "1/", "g/1", "x/1", "123456789/0", "1/123456789", "1/-1", "-1/1"} {
		if _, err := Parse(s); !errors.Is(err, ErrBadPosition) {
			t.Errorf("Parse(%q): %v, want ErrBadPosition", s, err)
		}
	}
}

func TestRaiseOnlyMovesForward(t *testing.T) {
	ctx := With(t.Context(), 0x200)
	c := CellOf(ctx)
	c.Raise(0x100)
	if Of(ctx) != 0x200 {
		t.Errorf("raised to an earlier position: %s, want 0/200", Of(ctx))
	}
	c.Raise(0x300)
	if Of(ctx) != 0x300 {
		t.Errorf("raised to %s, want 0/300", Of(ctx))
	}
	if CellOf(t.Context()) != nil || Of(t.Context()) != 0 {
		t.Error("a context without a position has one")
	}
}

// TestCookie: the position a request's commits reached comes back in the
// cookie, and the next request's units read after it; a request that
// committed no write sets no cookie.
func TestCookie(t *testing.T) {
	var seen Position
	h := Cookie("rp")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = Of(r.Context())
		if r.Method == http.MethodPost {
			CellOf(r.Context()).Raise(seen + 0x100) // as a commit that wrote does
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
		if len(cs) != 1 || cs[0].Name != "rp" || cs[0].Value != "2/0" || !cs[0].HttpOnly || cs[0].Path != "/" ||
			cs[0].SameSite != http.SameSiteLaxMode {
			t.Fatalf("%s: cookies %v, want rp=2/0, HttpOnly, Path=/, SameSite=Lax", target, cs)
		}
		if res := serve(http.MethodGet, target, cs[0]); seen != 0x2_00000000 || len(res.Cookies()) != 0 {
			t.Fatalf("%s: next request read after %s and set %v, want 2/0 and no cookie", target, seen, res.Cookies())
		}
	}
	if serve(http.MethodGet, "/", &http.Cookie{Name: "rp", Value: "junk"}); seen != 0 {
		t.Errorf("a cookie that is not a position read after %s, want none", seen)
	}
}

func TestValidCookieName(t *testing.T) {
	for name, want := range map[string]bool{"rp": true, "db_position": true, "": false, "a b": false, "a;b": false} {
		if got := ValidCookieName(name); got != want {
			t.Errorf("ValidCookieName(%q) = %v, want %v", name, got, want)
		}
	}
}
