package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
)

// CutProxy forwards TCP connections to a real PostgreSQL, and Cut drops
// them all and refuses new ones until Restore: the database becoming
// unreachable, as when it is stopped or the network fails, while the
// server itself stays up for the other tests.
type CutProxy struct {
	t      testing.TB
	addr   string // where the proxy listens
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
}

// NewCutProxy starts a CutProxy on a free loopback port that forwards to
// target (host:port); it is cut at the end of the test.
func NewCutProxy(t testing.TB, target string) *CutProxy {
	p := &CutProxy{t: t, target: target}
	p.listen("127.0.0.1:0")
	t.Cleanup(p.Cut)
	return p
}

func (p *CutProxy) listen(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

// Addr is the address the proxy listens on, for the URL under test.
func (p *CutProxy) Addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Cut closes the listener and every forwarded connection.
func (p *CutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Restore listens again on the same address.
func (p *CutProxy) Restore() { p.listen(p.addr) }
