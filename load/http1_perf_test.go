package load

import (
	"context"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connServer is a loopback server that records the client address of
// every request, so tests can count the connections the engine used.
type connServer struct {
	mu      sync.Mutex
	remotes map[string]int
	conns   []string // Connection header of each request
	handler http.HandlerFunc
}

func (s *connServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.remotes == nil {
		s.remotes = map[string]int{}
	}
	s.remotes[r.RemoteAddr]++
	s.conns = append(s.conns, r.Header.Get("Connection"))
	s.mu.Unlock()
	if s.handler != nil {
		s.handler(w, r)
		return
	}
	w.Write([]byte("ok"))
}

func (s *connServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.remotes)
}

func runWith(t *testing.T, cc ClientConfig, p *Plan, w Workload) ([]Result, Stats) {
	t.Helper()
	var c collect
	st, err := Run(context.Background(), Config{Plan: p, Workload: w, HTTP: cc, Sink: c.sink})
	if err != nil {
		t.Fatal(err)
	}
	return c.sorted(), st
}

func TestConnectionCapHeld(t *testing.T) {
	srv := &connServer{handler: func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(2 * time.Millisecond)
		w.Write([]byte("ok"))
	}}
	url := serve(t, srv)
	rs, _ := runWith(t, ClientConfig{Connections: 2}, plan(t, url), Workload{Threads: 8, Loops: 10})
	if len(rs) != 80 {
		t.Fatalf("%d results", len(rs))
	}
	for _, r := range rs {
		if r.Status != 200 || r.Error != "" {
			t.Fatalf("result %+v", r)
		}
	}
	if n := srv.count(); n > 2 || n == 0 {
		t.Fatalf("%d connections, want at most 2", n)
	}
}

func TestKeepAliveOffDialsEachRequest(t *testing.T) {
	srv := &connServer{}
	rs, _ := runWith(t, ClientConfig{DisableKeepAlive: true}, plan(t, serve(t, srv)), Workload{Threads: 1, Loops: 4})
	for i, r := range rs {
		if r.Status != 200 || r.Connect <= 0 {
			t.Errorf("request %d: status %d connect %v, want a new connection", i, r.Status, r.Connect)
		}
	}
	if n := srv.count(); n != 4 {
		t.Fatalf("%d connections for 4 requests", n)
	}
	for _, c := range srv.conns {
		if c != "close" {
			t.Fatalf("Connection headers %q, want close on each", srv.conns)
		}
	}
}

// A connection the server closed while idle is not used again: the
// request goes out on a new one and succeeds.
func TestServerClosedIdleConnection(t *testing.T) {
	srv := &connServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv, IdleTimeout: 30 * time.Millisecond}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	s := &Scenario{Requests: []RequestSpec{{Method: "PUT", URL: "http://" + ln.Addr().String() + "/x", Body: "b",
		Think: 150 * time.Millisecond}}}
	p, err := s.Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := runWith(t, ClientConfig{}, p, Workload{Threads: 1, Loops: 3})
	for i, r := range rs {
		if r.Status != 200 || r.Error != "" || r.Connect <= 0 {
			t.Errorf("request %d: status %d error %q connect %v", i, r.Status, r.Error, r.Connect)
		}
	}
	if n := srv.count(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
}

// Bodies of every framing are read whole, and a response that closes
// its connection is not followed by a request on it.
func TestResponseFraming(t *testing.T) {
	big := strings.Repeat("x", 20000)
	srv := &connServer{handler: func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Write([]byte(big[:7000]))
			w.(http.Flusher).Flush()
			w.Write([]byte(big[7000:]))
		case "/close":
			w.Header().Set("Connection", "close")
			w.Write([]byte("bye"))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		}
	}}
	url := serve(t, srv)
	s := &Scenario{Requests: []RequestSpec{{URL: url + "/chunked"}, {URL: url + "/empty"}, {Method: "HEAD", URL: url + "/chunked"},
		{URL: url + "/close"}, {URL: url + "/chunked"}}}
	p, err := s.Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := runWith(t, ClientConfig{}, p, Workload{Threads: 1, Loops: 1})
	want := []struct {
		status  int
		bytes   int64
		newConn bool
	}{{200, 20000, true}, {204, 0, false}, {200, 0, false}, {200, 3, false}, {200, 20000, true}}
	if len(rs) != len(want) {
		t.Fatalf("%d results", len(rs))
	}
	for i, w := range want {
		r := rs[i]
		if r.Status != w.status || r.BytesIn != w.bytes || (r.Connect > 0) != w.newConn || r.Error != "" {
			t.Errorf("%s: status %d bytes %d connect %v error %q", r.URL, r.Status, r.BytesIn, r.Connect, r.Error)
		}
	}
	if n := srv.count(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func TestTimeoutIsAResult(t *testing.T) {
	url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(300 * time.Millisecond)
	}))
	rs, _ := runWith(t, ClientConfig{Timeout: 50 * time.Millisecond}, plan(t, url+"/slow"), Workload{Threads: 1, Loops: 1})
	r := rs[0]
	if r.Status != 0 || !strings.Contains(r.Error, "timeout") || !strings.Contains(r.Error, "/slow") ||
		r.Elapsed < 50*time.Millisecond || r.Elapsed > 250*time.Millisecond {
		t.Fatalf("status %d error %q elapsed %v", r.Status, r.Error, r.Elapsed)
	}
}

// A request on a reused connection gets its whole timeout, not what is
// left of the deadline the previous request set (the worker-driven path
// renews a connection's deadline only when a request needs a later one).
func TestTimeoutOnReusedConnection(t *testing.T) {
	var n atomic.Int64
	srv := &connServer{handler: func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 1 {
			time.Sleep(100 * time.Millisecond) // within the timeout
		} else {
			time.Sleep(700 * time.Millisecond)
		}
		w.Write([]byte("ok"))
	}}
	url := serve(t, srv)
	const timeout = 200 * time.Millisecond
	rs, _ := runWith(t, ClientConfig{Timeout: timeout}, plan(t, url+"/slow"), Workload{Threads: 1, Loops: 2})
	if len(rs) != 2 || rs[0].Status != 200 || srv.count() != 1 {
		t.Fatalf("results %+v over %d connections, want a 200 and one connection", rs, srv.count())
	}
	r := rs[1]
	if r.Status != 0 || !strings.Contains(r.Error, "timeout") || r.Elapsed < timeout || r.Elapsed > timeout+250*time.Millisecond {
		t.Fatalf("second request: status %d error %q elapsed %v, want a timeout after %v", r.Status, r.Error, r.Elapsed, timeout)
	}
}

func TestSleepPrecise(t *testing.T) {
	s := newSleeper()
	s.precise = newPreciseClock()
	defer s.precise.close()
	for _, d := range []time.Duration{300 * time.Microsecond, 3 * time.Millisecond} {
		begin := time.Now()
		if !s.until(context.Background(), begin.Add(d)) {
			t.Fatal("stopped")
		}
		if got := time.Since(begin); got < d {
			t.Fatalf("slept %v, want at least %v", got, d)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s.until(ctx, time.Now().Add(time.Hour)) {
		t.Fatal("a cancelled wait reported success")
	}
}

// A client the caller gives carries every request, with all of its
// settings: here its cookie jar, which the worker-driven path would skip.
func TestCallerClientSendsEverything(t *testing.T) {
	var withCookie atomic.Int64
	url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := r.Cookie("session"); err == nil {
			withCookie.Add(1)
		}
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "s1", Path: "/"})
	}))
	client, err := NewClient(context.Background(), ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if client.Jar, err = cookiejar.New(nil); err != nil {
		t.Fatal(err)
	}
	var c collect
	if _, err := Run(context.Background(), Config{Plan: plan(t, url), Workload: Workload{Threads: 1, Loops: 3},
		Client: client, Sink: c.sink}); err != nil {
		t.Fatal(err)
	}
	if n := withCookie.Load(); n != 2 || len(c.sorted()) != 3 {
		t.Fatalf("%d of the 2 requests after the first carried the jar's cookie", n)
	}
}
