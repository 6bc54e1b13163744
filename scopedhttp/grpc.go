package scopedhttp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/http"
	"net/textproto"
	"strings"
)

// gRPC and gRPC-Web answer HTTP 200 whatever the outcome of the call, and
// carry the outcome in Grpc-Status: a trailer (gRPC), the last frame of
// the body (gRPC-Web), or a header for a trailers-only response. The
// automatic modes decide such a response by Grpc-Status as well as by the
// HTTP status, and commit only an OK ("0").

// errGRPCUnreadable answers a gRPC-Web response whose Grpc-Status could
// not be read, after its scope was rolled back.
var errGRPCUnreadable = errors.New("scopedhttp: the Grpc-Status of a gRPC-Web response could not be read, changes rolled back: " +
	"use the interceptors of scopedgrpc or scopedconnect to commit RPCs")

// isGRPC reports whether h describes a gRPC or gRPC-Web response.
func isGRPC(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "application/grpc")
}

// grpcCommit decides a gRPC or gRPC-Web response that the HTTP status
// would commit. abort is true when the outcome cannot be read: the scope
// is rolled back and the response must not reach the client as it is.
func (w *writer) grpcCommit() (commit, abort bool) {
	h := w.ResponseWriter.Header()
	if v, ok := grpcStatus(h); ok {
		return v == "0", false
	}
	ct := h.Get("Content-Type")
	if strings.HasPrefix(ct, "application/grpc-web") {
		if w.state == holding && !strings.HasPrefix(ct, "application/grpc-web-text") {
			if v, ok := grpcWebStatus(w.held.body); ok {
				return v == "0", false
			}
		}
		w.h.grpcLog.Do(func() {
			slog.Default().Warn("scopedhttp: a gRPC-Web response's Grpc-Status could not be read (streamed, base64 text or malformed): "+
				"it was rolled back and aborted; commit RPCs with the interceptors of "+
				"github.com/go-scoped/scoped/scopedgrpc or scopedconnect",
				"path", w.req.URL.Path, "content-type", ct)
		})
		return false, true
	}
	// gRPC without a Grpc-Status is no OK: roll back. The client sees the
	// missing status as an error of its own, so the response goes out.
	w.h.grpcLog.Do(func() {
		slog.Default().Warn("scopedhttp: a gRPC response had no Grpc-Status; it was rolled back. "+
			"Commit RPCs with the interceptors of github.com/go-scoped/scoped/scopedgrpc or scopedconnect",
			"path", w.req.URL.Path)
	})
	return false, false
}

// grpcStatus finds Grpc-Status as a header, a declared trailer or a
// trailer set with [http.TrailerPrefix].
func grpcStatus(h http.Header) (string, bool) {
	if v := h.Values("Grpc-Status"); len(v) > 0 {
		return strings.TrimSpace(v[0]), true
	}
	for k, v := range h {
		if len(v) > 0 && len(k) > len(http.TrailerPrefix) && strings.HasPrefix(k, http.TrailerPrefix) &&
			strings.EqualFold(k[len(http.TrailerPrefix):], "Grpc-Status") {
			return strings.TrimSpace(v[0]), true
		}
	}
	return "", false
}

// grpcWebStatus reads Grpc-Status from the trailer frame that ends a
// gRPC-Web body: frames are a flag byte, a 4-byte big-endian length and
// the data; the trailer frame has flag bit 0x80 and holds HTTP/1-style
// header lines. Anything that does not parse is unreadable.
func grpcWebStatus(body []byte) (string, bool) {
	for len(body) >= 5 {
		flag, n := body[0], binary.BigEndian.Uint32(body[1:5])
		if uint64(n) > uint64(len(body)-5) {
			return "", false
		}
		data := body[5 : 5+n]
		body = body[5+n:]
		if flag&0x80 == 0 {
			continue
		}
		if len(body) != 0 || flag&0x01 != 0 { // not last, or compressed
			return "", false
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			k, v, ok := bytes.Cut(bytes.TrimRight(line, "\r"), []byte(":"))
			if ok && textproto.CanonicalMIMEHeaderKey(string(bytes.TrimSpace(k))) == "Grpc-Status" {
				return string(bytes.TrimSpace(v)), true
			}
		}
		return "", false
	}
	return "", false
}
