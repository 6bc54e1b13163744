package scopedsql_test

import (
	"database/sql"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tripProxy is a TCP proxy in front of a PostgreSQL server that counts
// round trips: the client messages that make it wait for the server,
// Query (a simple query) and Sync (the end of an extended-protocol
// exchange), as lib/pq sends them. It can delay every chunk, each way,
// as a network would.
type tripProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration
	trips  atomic.Int64
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// newTripProxy proxies the server of dsn and returns the proxy and a
// *sql.DB of lib/pq through it, both closed when t ends.
func newTripProxy(t testing.TB, dsn string) (*tripProxy, *sql.DB) {
	return newDelayProxy(t, dsn, 0)
}

// newDelayProxy is newTripProxy delaying every chunk by delay, each way.
func newDelayProxy(t testing.TB, dsn string, delay time.Duration) (*tripProxy, *sql.DB) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tripProxy{ln: ln, target: u.Host, delay: delay, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	u.Host = ln.Addr().String()
	db, err := sql.Open("postgres", u.String())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	t.Cleanup(func() { _ = db.Close() }) // before the proxy's close
	return p, db
}

func (p *tripProxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *tripProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *tripProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *tripProxy) serve(client net.Conn) {
	defer p.wg.Done()
	p.track(client, true)
	defer p.track(client, false)
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.track(server, true)
	defer p.track(server, false)
	defer server.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if p.delay == 0 {
			_, _ = io.Copy(client, server)
		} else {
			p.delayed(server, client)
		}
		_ = client.Close()
	}()
	p.forward(client, server)
	_ = server.Close()
	<-done
}

// forward copies the client's stream to the server, counting its
// messages after the startup message.
func (p *tripProxy) forward(client, server net.Conn) {
	var buf []byte
	started := false
	chunk := make([]byte, 32<<10)
	for {
		n, err := client.Read(chunk)
		if n > 0 {
			buf = append(buf, chunk[:n]...)
			for {
				if !started {
					if len(buf) < 8 || len(buf) < int(binary.BigEndian.Uint32(buf)) {
						break
					}
					m := int(binary.BigEndian.Uint32(buf))
					started = binary.BigEndian.Uint32(buf[4:]) != 80877103 // not an SSLRequest
					buf = buf[m:]
					continue
				}
				if len(buf) < 5 || len(buf) < 1+int(binary.BigEndian.Uint32(buf[1:])) {
					break
				}
				if buf[0] == 'Q' || buf[0] == 'S' {
					p.trips.Add(1)
				}
				buf = buf[1+int(binary.BigEndian.Uint32(buf[1:])):]
			}
			if p.delay > 0 {
				time.Sleep(p.delay)
			}
			if _, werr := server.Write(chunk[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// delayed copies from to to, each chunk after p.delay.
func (p *tripProxy) delayed(from, to net.Conn) {
	chunk := make([]byte, 32<<10)
	for {
		n, err := from.Read(chunk)
		if n > 0 {
			time.Sleep(p.delay)
			if _, werr := to.Write(chunk[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
