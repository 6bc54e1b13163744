package scopedhttp

import (
	"net/http"

	"github.com/go-scoped/scoped"
)

// Middleware returns a middleware that gives every request its own
// [scoped.Scope], ends it when the handler returns (or panics, or the
// client goes away), and commits it according to the commit mode before
// the status line is sent. Its shape, func(http.Handler) http.Handler,
// fits net/http, chi and most routers.
func Middleware(opts ...Option) func(http.Handler) http.Handler {
	cfg := config{onError: DefaultErrorHandler}
	for _, o := range opts {
		o.apply(&cfg)
	}
	return func(next http.Handler) http.Handler {
		if next == nil {
			panic("scopedhttp: Middleware(...)(nil)")
		}
		return &handler{next: next, cfg: cfg}
	}
}

type handler struct {
	next http.Handler
	cfg  config
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The middleware always ends the scope itself, on this goroutine, so
	// it needs no safety net: and it must not have one, which could end a
	// session on another goroutine while the handler still uses it.
	ctx, scope := scoped.BeginWithoutSafetyNet(r.Context())
	for _, bind := range h.cfg.binds {
		ctx = bind(ctx)
	}
	r = r.WithContext(ctx)
	sw, rw := newWriter(w, r, scope, &h.cfg)
	returned := false
	defer func() {
		if !returned {
			// A panic (or runtime.Goexit): roll back and let it go on
			// unrecovered, with its stack, to the server or a recoverer.
			_ = scope.Remove()
			return
		}
		sw.finish()
	}()
	h.next.ServeHTTP(rw, r)
	returned = true
}
