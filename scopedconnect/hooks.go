package scopedconnect

import (
	"net/http"

	"github.com/go-scoped/scoped/shared/rpcscope"
)

// Handler returns h, a Connect handler (the one a generated
// NewXServiceHandler returns, or a mux of them), with the unit hooks
// ([scoped.OnCommit], [scoped.OnRollback]) of the calls its interceptor
// ([NewInterceptor]) runs started once h has returned, on a goroutine of
// their own, so that they never delay the client:
//
//	path, handler := userv1connect.NewUserServiceHandler(svc, opts...)
//	mux.Handle(path, scopedconnect.Handler(handler))
//
// net/http sends the end of a response (the HTTP/2 END_STREAM, the gRPC
// trailers, the last chunk of an HTTP/1.1 body) only when its handler has
// returned, and a client of every protocol waits for it: a hook run
// before, even after a flush, would hold the answer back. So the hooks
// run alongside that last write, and a graceful [http.Server.Shutdown]
// does not wait for them. A hook that panics is logged and changes no
// answer; a call without hooks starts no goroutine.
//
// Without Handler the hooks run when the interceptor ends the call's
// scope, at the commit point, before the response is sent: connect-go
// runs nothing of an interceptor after the response.
func Handler(h http.Handler) http.Handler { return hooksHandler{h} }

type hooksHandler struct{ next http.Handler }

func (h hooksHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := rpcscope.WithAfter(r.Context())
	// Deferred, so that the hooks of an earlier attempt of a retried call
	// (WithRetry), held when a later one panicked, still run.
	defer func() {
		if rpcscope.Pending(ctx) {
			go rpcscope.RunAfter(ctx)
		}
	}()
	h.next.ServeHTTP(w, r.WithContext(ctx))
}
