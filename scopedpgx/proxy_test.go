package scopedpgx

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-scoped/scoped/internal/dbtest"
	"github.com/jackc/pgx/v5/pgxpool"
)

// proxy is a TCP proxy between the tests' pools and PostgreSQL that reads
// the client's side of the protocol: it counts the messages that make the
// client wait for the server (Sync and Query: one round trip each), can
// delay every chunk in both directions, and can reset a connection right
// after forwarding a COMMIT, the fault a real server cannot produce on
// demand.
type proxy struct {
	t      testing.TB
	ln     net.Listener
	target string
	delay  time.Duration // added to every chunk, each way

	roundTrips atomic.Int64 // client Sync and Query messages
	messages   atomic.Int64 // every client message after startup

	// resetAfterCommit, when set, makes the proxy reset the client's
	// connection right after it forwarded a Query "commit" to the server.
	resetAfterCommit atomic.Bool
	resets           atomic.Int64
	// blackholeAfterReset sets blackhole with the reset.
	blackholeAfterReset atomic.Bool
	// blackhole, when set, stops forwarding anything: new and existing
	// connections hang, as when the server cannot be reached.
	blackhole atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(t testing.TB, delay time.Duration) *proxy {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbtest.Postgres(t).DSN)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, delay: delay, conns: map[net.Conn]struct{}{},
		target: net.JoinHostPort(cfg.ConnConfig.Host, itoa(int(cfg.ConnConfig.Port)))}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// pool returns a pool of at most maxConns connections through p, closed
// when t ends.
func (p *proxy) pool(t testing.TB, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbtest.Postgres(t).DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.Host = "127.0.0.1"
	cfg.ConnConfig.Port = uint16(p.ln.Addr().(*net.TCPAddr).Port)
	cfg.ConnConfig.Fallbacks = nil
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func (p *proxy) close() {
	p.blackhole.Store(false)
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *proxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(client)
	}
}

func (p *proxy) serve(client net.Conn) {
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
		p.pipe(client, server, nil)
	}()
	p.pipe(server, client, p.inspect(client, server))
	_ = client.Close()
	<-done
}

// inspect returns the parser of the client's stream for one connection:
// it is given each chunk the client sent, and returns false to end the
// connection with a reset after forwarding the chunk.
func (p *proxy) inspect(client, server net.Conn) func([]byte) bool {
	var buf []byte
	started := false
	return func(chunk []byte) bool {
		buf = append(buf, chunk...)
		for {
			if !started {
				if len(buf) < 8 {
					return true
				}
				n := int(binary.BigEndian.Uint32(buf))
				if len(buf) < n {
					return true
				}
				// SSLRequest (80877103) is answered 'N' and followed by the
				// real startup message.
				if binary.BigEndian.Uint32(buf[4:]) != 80877103 {
					started = true
				}
				buf = buf[n:]
				continue
			}
			if len(buf) < 5 {
				return true
			}
			n := 1 + int(binary.BigEndian.Uint32(buf[1:]))
			if len(buf) < n {
				return true
			}
			typ, body := buf[0], buf[5:n]
			buf = buf[n:]
			p.messages.Add(1)
			if typ == 'S' || typ == 'Q' {
				p.roundTrips.Add(1)
			}
			if typ == 'Q' && p.resetAfterCommit.Load() && strings.EqualFold(strings.TrimRight(string(body), "\x00"), "commit") {
				p.resets.Add(1)
				if p.blackholeAfterReset.Load() {
					p.blackhole.Store(true)
				}
				if tc, ok := client.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
				return false
			}
		}
	}
}

// pipe copies src to dst, each chunk delayed by p.delay and passed to
// after (if any) just before it is forwarded; after returning false ends
// the connection once the chunk is forwarded.
func (p *proxy) pipe(dst, src net.Conn, after func([]byte) bool) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b[:n], time.Now().Add(p.delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		_ = dst.Close()
		_ = src.Close()
		for range q { // let the reader finish
		}
	}()
	for c := range q {
		for p.blackhole.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if d := time.Until(c.at); d > 0 {
			time.Sleep(d)
		}
		// Count before forwarding, so that a client that has its answer
		// sees its messages counted.
		keep := after == nil || after(c.b)
		if _, err := dst.Write(c.b); err != nil || !keep {
			return
		}
	}
}
