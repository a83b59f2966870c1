package load

// The send path of plain-HTTP targets.
//
// net/http's Transport runs two goroutines per connection (a reader and a
// writer) and hands every request and response between them and the
// caller over channels; http.Client adds a timer, a context and a goroutine
// per request when it has a timeout. For a load generator that is most of
// its CPU per request. Requests to http:// targets therefore go over
// connections that the sending worker drives itself: it writes the request
// (bytes prepared once for a static target), reads the response with
// net/http's own parser (http.ReadResponse, so framing, chunking and
// keep-alive rules are the standard library's), discards the body and
// returns the connection to its host's pool. The only per-request extras
// are a pool hand-off and, now and then, a later deadline on the
// connection (see roundTrip). https, HTTP/2, OAuth and a caller's own
// client (Config.Client) use net/http.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// checkIdleAfter is how long a pooled connection may sit idle before it
// is checked for a close by the server before reuse (one non-blocking
// peek); a connection in steady use is never checked.
const checkIdleAfter = 100 * time.Millisecond

// transport holds the worker-driven connections of a run whose client
// Run built itself, with the settings of that client's base transport.
// It is safe for concurrent use.
type transport struct {
	base      *http.Transport
	timeout   time.Duration
	idle      time.Duration
	maxConns  int
	keepAlive bool
	dialer    net.Dialer

	mu    sync.Mutex
	hosts map[string]*hostPool
}

// CloseIdleConnections closes the idle connections of both paths.
func (t *transport) CloseIdleConnections() {
	t.base.CloseIdleConnections()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.hosts {
		p.mu.Lock()
		for _, c := range p.stack {
			c.close()
		}
		p.stack = nil
		p.mu.Unlock()
		for p.idle != nil {
			select {
			case c := <-p.idle:
				c.close()
				continue
			default:
			}
			break
		}
	}
}

// pool returns the connection pool of addr (host:port).
func (t *transport) pool(addr string) *hostPool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.hosts[addr]; ok {
		return p
	}
	if t.hosts == nil {
		t.hosts = make(map[string]*hostPool)
	}
	p := &hostPool{t: t, addr: addr}
	if t.maxConns > 0 {
		p.idle = make(chan *conn, t.maxConns)
		p.sem = make(chan struct{}, t.maxConns)
	}
	t.hosts[addr] = p
	return p
}

// hostPool holds the connections to one address. Without a cap, idle
// connections are a stack (the most recently used goes out first, so a
// burst's surplus connections stay idle and age out instead of keeping
// every connection lukewarm); with a cap, they wait in a channel, beside
// a semaphore of MaxConnsPerHost slots.
type hostPool struct {
	t    *transport
	addr string
	idle chan *conn    // with a cap
	sem  chan struct{} // with a cap

	mu    sync.Mutex
	stack []*conn // without a cap
}

// conn is one HTTP/1.1 connection, used by one request at a time.
type conn struct {
	pool *hostPool
	nc   net.Conn
	br   *bufio.Reader
	used time.Time // end of the last response
	// deadline is the connection's read and write deadline, renewed
	// only when a request needs a later one (see roundTrip).
	deadline time.Time
	reused   bool
	closed   bool
}

func (c *conn) close() {
	if c.closed {
		return
	}
	c.closed = true
	c.nc.Close()
	if c.pool.sem != nil {
		<-c.pool.sem
	}
}

// get returns an idle connection or a new one; with a cap it waits for
// an idle connection or a free slot. dial is the time spent connecting (0
// for a reused connection).
func (p *hostPool) get(ctx context.Context, now time.Time) (c *conn, dial time.Duration, err error) {
	for {
		c, slot, err := p.take(ctx)
		if err != nil {
			return nil, 0, err
		}
		if slot {
			break
		}
		if p.usable(c, now) {
			c.reused = true
			return c, 0, nil
		}
		c.close() // frees its slot
	}
	begin := time.Now()
	nc, err := p.t.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		if p.sem != nil {
			<-p.sem
		}
		return nil, 0, err
	}
	return &conn{pool: p, nc: nc, br: bufio.NewReaderSize(nc, 4096)}, time.Since(begin), nil
}

// take returns an idle connection, or slot true when the caller may dial
// a new one (holding one of the cap's slots).
func (p *hostPool) take(ctx context.Context) (c *conn, slot bool, err error) {
	if p.sem == nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		if n := len(p.stack); n > 0 {
			c = p.stack[n-1]
			p.stack[n-1] = nil
			p.stack = p.stack[:n-1]
			return c, false, nil
		}
		return nil, true, nil
	}
	select {
	case c = <-p.idle:
		return c, false, nil
	default:
	}
	select {
	case c = <-p.idle:
		return c, false, nil
	case p.sem <- struct{}{}:
		return nil, true, nil
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// usable reports whether an idle connection can carry a request: not idle
// too long, and not closed by the server while it waited.
func (p *hostPool) usable(c *conn, now time.Time) bool {
	idle := now.Sub(c.used)
	if p.t.idle > 0 && idle > p.t.idle {
		return false
	}
	return idle < checkIdleAfter || (c.br.Buffered() == 0 && alive(c.nc))
}

// put returns c to the pool after a complete response, or closes it.
func (p *hostPool) put(c *conn, reusable bool, now time.Time) {
	if !reusable || !p.t.keepAlive {
		c.close()
		return
	}
	c.used = now
	if p.sem == nil {
		p.mu.Lock()
		p.stack = append(p.stack, c)
		p.mu.Unlock()
		return
	}
	select {
	case p.idle <- c:
	default:
		c.close()
	}
}

// deadlineSlack is how much later than its timeout a request on a
// worker-driven connection may time out: 1/64 of the timeout, at most
// 50 ms (30 s, the default, gives 50 ms; 1 s gives 15.6 ms).
func deadlineSlack(timeout time.Duration) time.Duration {
	return min(timeout/64, 50*time.Millisecond)
}

// errNoResponse marks a failure before any byte of the response arrived
// on a reused connection: the server had closed it, and the request may
// be sent again on another.
var errNoResponse = errors.New("connection closed before any response")

// roundTrip sends wire (a complete request) on c and reads the response
// head; TTFB is from start to the first response byte. On success the
// caller reads and closes the body and then calls finish.
func (c *conn) roundTrip(req *http.Request, wire []byte, start time.Time) (resp *http.Response, ttfb time.Duration, err error) {
	// Setting a deadline re-arms a runtime timer (a few per cent of a
	// request's CPU), so a connection's deadline is set a little past the
	// one a request needs, and renewed only once a request needs a later
	// one: a request times out after its timeout and at most
	// deadlineSlack later, never earlier.
	timeout := c.pool.t.timeout
	if want := start.Add(timeout); c.deadline.Before(want) {
		c.deadline = want.Add(deadlineSlack(timeout))
		if err := c.nc.SetDeadline(c.deadline); err != nil {
			return nil, 0, err
		}
	}
	if _, err := c.nc.Write(wire); err != nil {
		if c.reused {
			return nil, 0, errNoResponse
		}
		return nil, 0, err
	}
	if _, err := c.br.Peek(1); err != nil {
		if c.reused && (errors.Is(err, io.EOF) || isReset(err)) && replayable(req) {
			return nil, 0, errNoResponse
		}
		return nil, 0, err
	}
	ttfb = time.Since(start)
	for {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return nil, 0, err
		}
		// Skip informational responses as net/http does (101 is final).
		if resp.StatusCode < 100 || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, ttfb, nil
		}
	}
}

// replayable is net/http's rule for sending a request again after the
// server closed a reused connection: idempotent methods only.
func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

// isReset reports a connection reset or broken pipe.
func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// doFast sends the request over a worker-driven connection and returns
// the response with its body unread, and the connection, which the
// caller returns to its pool once the body is read.
func (w *worker) doFast(ctx context.Context, t *Target, u *url.URL, h http.Header, body []byte, res *Result, intended time.Time) (*http.Response, *conn, time.Time, error) {
	r := w.r
	req := &w.req
	*req = http.Request{Method: t.Method, URL: u, Host: u.Host, Header: h,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Close: !r.fast.keepAlive}
	wire := t.wire
	if wire == nil || req.Close || w.customHeader {
		wire = t.appendWire(w.wireBuf[:0], u, h, body, req.Close)
		if wire == nil {
			// net/http cannot write it either: let it say why.
			resp, start, err := w.doStd(ctx, t, u, h, body, res, intended)
			return resp, nil, start, err
		}
		if cap(wire) <= maxBuffer {
			w.wireBuf = wire[:0]
		}
	}
	pool := w.poolFor(u)
	start := w.started(res, intended)
	for {
		c, dial, err := pool.get(ctx, start)
		if err != nil {
			return nil, nil, start, urlError(req, res.URL, r.fast.timeout, err)
		}
		w.inflight.Store(c)
		if ctx.Err() != nil {
			w.inflight.Store(nil)
			c.close()
			return nil, nil, start, ctx.Err()
		}
		resp, ttfb, err := c.roundTrip(req, wire, start)
		if err == nil {
			res.Connect, res.TTFB = dial, ttfb
			return resp, c, start, nil
		}
		w.inflight.Store(nil)
		c.close()
		if err != errNoResponse {
			return nil, nil, start, urlError(req, res.URL, r.fast.timeout, err)
		}
		// The server had closed the reused connection: send again.
	}
}

// poolFor returns the connection pool of u's host, cached for the
// worker's last host.
func (w *worker) poolFor(u *url.URL) *hostPool {
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	if w.pool == nil || addr != w.poolAddr {
		w.pool, w.poolAddr = w.r.fast.pool(addr), addr
	}
	return w.pool
}

// urlError words a failure of the worker-driven path as net/http's
// Client would: the method, the URL and the cause.
func urlError(req *http.Request, urlStr string, timeout time.Duration, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("timeout after %v (%w)", timeout, err)
	}
	op := req.Method[:1] + strings.ToLower(req.Method[1:])
	return &url.Error{Op: op, URL: urlStr, Err: err}
}
