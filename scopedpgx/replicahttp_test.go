package scopedpgx

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-scoped/scoped/scopedsql"
)

// TestPositionSharedWithScopedsql: the position of one driver's
// WithReadAfter, or of its ReadYourWrites cookie, is the other's, so that
// a service using both drivers carries one position per client.
func TestPositionSharedWithScopedsql(t *testing.T) {
	ctx := WithReadAfter(t.Context(), 0x100)
	if p := scopedsql.CommitPosition(ctx); p != 0x100 {
		t.Errorf("scopedsql.CommitPosition after scopedpgx.WithReadAfter(0/100): %s", p)
	}
	ctx = scopedsql.WithReadAfter(t.Context(), 0x200)
	if p := CommitPosition(ctx); p != 0x200 {
		t.Errorf("CommitPosition after scopedsql.WithReadAfter(0/200): %s", p)
	}
	for name, carrier := range map[string]func(string) func(http.Handler) http.Handler{
		"scopedsql": scopedsql.ReadYourWrites, "scopedpgx": ReadYourWrites,
	} {
		var pgxSaw, sqlSaw Position
		h := carrier("rp")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			pgxSaw, sqlSaw = CommitPosition(r.Context()), scopedsql.CommitPosition(r.Context())
		}))
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: "rp", Value: "1/FFFFFF00"})
		h.ServeHTTP(httptest.NewRecorder(), r)
		if pgxSaw != 0x1_FFFFFF00 || sqlSaw != 0x1_FFFFFF00 {
			t.Errorf("%s.ReadYourWrites: scopedpgx read after %s, scopedsql after %s; want 1/FFFFFF00 both", name, pgxSaw, sqlSaw)
		}
	}
	if _, err := scopedsql.ParsePosition("junk"); !errors.Is(err, ErrBadPosition) {
		t.Errorf("scopedsql.ParsePosition: %v, want scopedpgx.ErrBadPosition", err)
	}
}

func TestReadYourWritesPanics(t *testing.T) {
	for _, name := range []string{"", "a b"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("ReadYourWrites(%q) did not panic", name)
				}
			}()
			ReadYourWrites(name)
		}()
	}
}
