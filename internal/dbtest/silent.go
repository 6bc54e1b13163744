package dbtest

import (
	"net"
	"sync"
	"testing"
)

// SilentServer accepts TCP connections and never answers on them, as a
// frozen host behind a live load balancer does, and returns its address.
// Its connections are closed when t ends, which frees what waits on them.
func SilentServer(t testing.TB) string {
	addr, _ := MutedServer(t)
	return addr
}

// MutedServer is SilentServer that can also be ended early: unmute closes
// the listener and every connection (a later dial is refused). It runs
// when t ends at the latest, and once.
func MutedServer(t testing.TB) (addr string, unmute func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	var once sync.Once
	unmute = func() {
		once.Do(func() {
			_ = ln.Close()
			<-done
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				_ = c.Close()
			}
		})
	}
	t.Cleanup(unmute)
	return ln.Addr().String(), unmute
}
