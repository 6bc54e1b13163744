package scopedsql_test

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-scoped/scoped/internal/dbtest"
)

// commitProxy is a TCP proxy between a driver and its server that misbehaves
// at the first COMMIT of each connection once armed: it either forwards
// the COMMIT and then resets both sides (the client never hears the
// outcome), or stops forwarding before the COMMIT until released (a COMMIT
// that never returns). It recognises COMMIT as lib/pq and
// go-sql-driver/mysql send it: a simple query "COMMIT\x00" (PostgreSQL),
// a COM_QUERY "\x03COMMIT" (MySQL).
type commitProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	stall  bool // stop forwarding instead of resetting
	// dropEvery > 0: every dropEvery-th COMMIT is reset without being
	// forwarded, so that the server aborts it.
	dropEvery int64
	armed     atomic.Bool
	hits      atomic.Int64

	mu       sync.Mutex
	released bool
	held     []net.Conn // connections a stall holds, closed on release
	wg       sync.WaitGroup
}

func newCommitProxy(t *testing.T, target string, stall bool) *commitProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &commitProxy{t: t, ln: ln, target: target, stall: stall}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.release()
		p.wg.Wait()
	})
	return p
}

func (p *commitProxy) addr() string { return p.ln.Addr().String() }

// dsn returns s's DSN pointed at the proxy.
func (p *commitProxy) dsn(s dbtest.Server) string {
	return strings.Replace(s.DSN, p.target, p.addr(), 1)
}

// release lets every stalled connection go: it closes them.
func (p *commitProxy) release() {
	p.mu.Lock()
	p.released = true
	held := p.held
	p.held = nil
	p.mu.Unlock()
	for _, c := range held {
		_ = c.Close()
	}
}

func (p *commitProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.wg.Add(2)
		go func() { defer p.wg.Done(); p.clientToServer(client, server) }()
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(client, server)
			_ = client.Close()
		}()
	}
}

func isCommit(b []byte) bool {
	return bytes.Contains(b, []byte("COMMIT\x00")) || bytes.Contains(b, []byte("\x03COMMIT"))
}

func (p *commitProxy) clientToServer(client, server net.Conn) {
	held := false
	defer func() {
		if !held {
			_ = server.Close()
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if p.armed.Load() && isCommit(chunk) {
				hit := p.hits.Add(1)
				if p.stall {
					held = true
					p.hold(client, server)
					return
				}
				if p.dropEvery == 0 || hit%p.dropEvery != 0 {
					_, _ = server.Write(chunk)
				}
				resetAndClose(client)
				resetAndClose(server)
				return
			}
			if _, werr := server.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// hold keeps client and server open, forwarding nothing more, until release.
func (p *commitProxy) hold(client, server net.Conn) {
	p.mu.Lock()
	if !p.released {
		p.held = append(p.held, client, server)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	_ = client.Close()
	_ = server.Close()
}

func resetAndClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST, not FIN
	}
	_ = c.Close()
}

// serverAddr is the host:port of s's DSN.
func serverAddr(s dbtest.Server) string {
	if s.Name == "mysql" {
		i, j := strings.Index(s.DSN, "tcp("), strings.Index(s.DSN, ")")
		return s.DSN[i+4 : j]
	}
	rest := s.DSN[strings.Index(s.DSN, "@")+1:]
	return rest[:strings.IndexAny(rest, "/?")]
}
