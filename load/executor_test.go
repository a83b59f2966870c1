package load

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ratelab/limit"
)

// serve starts a real HTTP server on loopback and returns its URL.
func serve(t *testing.T, h http.Handler) string { return serveB(t, h) }

func serveB(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// limitServer answers request n (from 0, in arrival order) with a 429 when
// reject(n) says so, the way the test decides; every response advertises
// the remaining quota 100−n.
type limitServer struct {
	n      atomic.Int64
	reject func(n int64) (retryAfterMs int, ok bool)
	delay  time.Duration
	bodies bool // send ratelab's 429 body
}

func (s *limitServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.n.Add(1) - 1
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	w.Header().Set("RateLimit-Policy", `"org";q=100;w=1`)
	w.Header().Set("RateLimit", fmt.Sprintf(`"org";r=%d;t=1`, max(0, 100-n)))
	if s.reject != nil {
		if ms, ok := s.reject(n); ok {
			w.Header().Set("Retry-After", fmt.Sprint((ms+999)/1000))
			w.WriteHeader(http.StatusTooManyRequests)
			if s.bodies {
				fmt.Fprintf(w, `{"message":"Rate limit exceeded.","code":"too_many_requests","limit":{"policy":"script-writes","retryAfterMs":%d}}`, ms)
			}
			return
		}
	}
	w.Write([]byte("ok"))
}

// collect is a Sink that copies every result.
type collect struct {
	mu  sync.Mutex
	all []Result
}

func (c *collect) sink(r *Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := *r
	cp.RateLimitRaw = slices.Clone(r.RateLimitRaw)
	c.all = append(c.all, cp)
}

func (c *collect) sorted() []Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(c.all)
	slices.SortFunc(out, func(a, b Result) int { return int(a.Seq) - int(b.Seq) })
	return out
}

func plan(t *testing.T, url string) *Plan {
	t.Helper()
	s := &Scenario{Requests: []RequestSpec{{URL: url}}}
	p, err := s.Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClosedRateLimitResults(t *testing.T) {
	srv := &limitServer{bodies: true, reject: func(n int64) (int, bool) { return 250, n == 3 || n == 4 }}
	url := serve(t, srv)
	var c collect
	st, err := Run(context.Background(), Config{Plan: plan(t, url+"/x"), Workload: Workload{Threads: 1, Loops: 6}, Sink: c.sink})
	if err != nil {
		t.Fatal(err)
	}
	rs := c.sorted()
	if st.Sent != 6 || len(rs) != 6 || st.Dropped != 0 {
		t.Fatalf("sent %d, results %d", st.Sent, len(rs))
	}
	for i, r := range rs {
		want429 := i == 3 || i == 4
		if r.Seq != uint64(i) || r.Iteration != i || r.Thread != 1 || r.Label != "GET /x" || r.URL != url+"/x" {
			t.Errorf("result %d: %+v", i, r)
		}
		if want429 {
			if r.Status != 429 || r.Policy != "script-writes" || r.RetryAfter != 250*time.Millisecond || r.Success() {
				t.Errorf("result %d: status %d policy %q retry %v", i, r.Status, r.Policy, r.RetryAfter)
			}
		} else if r.Status != 200 || r.Policy != "org" || r.RetryAfter != 0 || r.BytesIn != 2 {
			t.Errorf("result %d: status %d policy %q retry %v bytes %d", i, r.Status, r.Policy, r.RetryAfter, r.BytesIn)
		}
		if r.Remaining != int64(100-i) {
			t.Errorf("result %d: remaining %d", i, r.Remaining)
		}
		if r.Waited != 0 || r.Elapsed <= 0 || r.TTFB <= 0 || r.TTFB > r.Elapsed || !r.Intended.Equal(r.Start) {
			t.Errorf("result %d: waited %v elapsed %v ttfb %v", i, r.Waited, r.Elapsed, r.TTFB)
		}
	}
	if rs[0].Connect <= 0 || rs[1].Connect != 0 {
		t.Errorf("connect %v then %v: want a dial, then a reused connection", rs[0].Connect, rs[1].Connect)
	}
}

// Without ratelab's body, Retry-After comes from the header; formats the
// parser cannot read are kept raw.
func TestRetryAfterHeaderAndRaw(t *testing.T) {
	url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "2")
		w.Header().Set("X-RateLimit-Remaining", "lots")
		w.WriteHeader(429)
	}))
	var c collect
	if _, err := Run(context.Background(), Config{Plan: plan(t, url), Workload: Workload{Loops: 1}, Sink: c.sink}); err != nil {
		t.Fatal(err)
	}
	r := c.sorted()[0]
	if r.Status != 429 || r.RetryAfter != 2*time.Second || r.Remaining != -1 ||
		len(r.RateLimitRaw) != 1 || !strings.Contains(r.RateLimitRaw[0], "lots") {
		t.Fatalf("%+v", r)
	}
}

func TestClosedHonorsRetryAfter(t *testing.T) {
	srv := &limitServer{bodies: true, reject: func(n int64) (int, bool) { return 200, n == 1 }}
	var c collect
	_, err := Run(context.Background(), Config{Plan: plan(t, serve(t, srv)), Workload: Workload{Threads: 1, Loops: 4},
		RetryAfter: RetryHonor, Sink: c.sink})
	if err != nil {
		t.Fatal(err)
	}
	rs := c.sorted()
	if rs[1].Status != 429 || rs[2].Waited != 200*time.Millisecond || rs[3].Waited != 0 {
		t.Fatalf("waited %v %v %v", rs[1].Waited, rs[2].Waited, rs[3].Waited)
	}
	if gap := rs[2].Start.Sub(rs[1].Start.Add(rs[1].Elapsed)); gap < 200*time.Millisecond {
		t.Fatalf("next request %v after the 429, want ≥ 200ms", gap)
	}
}

func TestOpenScheduleExact(t *testing.T) {
	var c collect
	var start time.Time
	st, err := Run(context.Background(), Config{Plan: plan(t, serve(t, &limitServer{})),
		Workload: Workload{Rate: limit.Per(200, time.Second), Duration: 300 * time.Millisecond},
		Sink:     c.sink, Started: func(s time.Time) { start = s }})
	if err != nil {
		t.Fatal(err)
	}
	rs := c.sorted()
	if len(rs) != 60 || st.Dropped != 0 || st.Interrupted {
		t.Fatalf("%d results, %+v", len(rs), st)
	}
	intended := make([]time.Duration, len(rs))
	for i, r := range rs {
		intended[i] = r.Intended.Sub(start)
		if r.Start.Before(r.Intended) || r.Latency() < r.Elapsed {
			t.Errorf("result %d sent %v before it was intended", i, r.Intended.Sub(r.Start))
		}
	}
	slices.Sort(intended)
	for i, d := range intended {
		if d != time.Duration(i)*5*time.Millisecond {
			t.Fatalf("arrival %d intended at %v, want %v", i, d, time.Duration(i)*5*time.Millisecond)
		}
	}
}

func TestOpenDropsWhenWorkersRunOut(t *testing.T) {
	var c collect
	st, err := Run(context.Background(), Config{Plan: plan(t, serve(t, &limitServer{delay: 150 * time.Millisecond})),
		Workload: Workload{Rate: limit.Per(100, time.Second), Duration: 300 * time.Millisecond, MaxWorkers: 2},
		Sink:     c.sink})
	if err != nil {
		t.Fatal(err)
	}
	if st.Workers != 2 || st.Dropped == 0 || st.Sent+st.Dropped != 30 || int(st.Sent) != len(c.sorted()) {
		t.Fatalf("%+v", st)
	}
}

func TestOpenHonorPausesSchedule(t *testing.T) {
	srv := &limitServer{bodies: true, reject: func(n int64) (int, bool) { return 300, n == 2 }}
	var c collect
	var start time.Time
	_, err := Run(context.Background(), Config{Plan: plan(t, serve(t, srv)),
		Workload: Workload{Rate: limit.Per(20, time.Second), Loops: 6}, RetryAfter: RetryHonor,
		Sink: c.sink, Started: func(s time.Time) { start = s }})
	if err != nil {
		t.Fatal(err)
	}
	rs := c.sorted()
	if len(rs) != 6 || rs[2].Status != 429 {
		t.Fatalf("results %d", len(rs))
	}
	// Arrival 3 was due at 150 ms but the schedule paused until 300 ms
	// after the 429's response; the arrivals after it keep their spacing.
	pauseEnd := rs[2].Start.Add(rs[2].Elapsed).Add(300 * time.Millisecond)
	if rs[3].Waited <= 0 || rs[3].Intended.Before(pauseEnd.Add(-time.Millisecond)) {
		t.Fatalf("arrival 3 intended %v, pause ends %v, waited %v", rs[3].Intended.Sub(start), pauseEnd.Sub(start), rs[3].Waited)
	}
	if d := rs[4].Intended.Sub(rs[3].Intended); d != 50*time.Millisecond || rs[4].Waited != 0 {
		t.Fatalf("arrival 4 %v after 3, waited %v", d, rs[4].Waited)
	}
}

func TestRampUpAndThroughputTimer(t *testing.T) {
	var c collect
	var start time.Time
	// 4 threads over 400 ms: thread i starts at i × 100 ms. The timer in
	// all-threads mode spaces each thread's samples 4 × 50 ms apart.
	_, err := Run(context.Background(), Config{Plan: plan(t, serve(t, &limitServer{})),
		Workload: Workload{Threads: 4, RampUp: 400 * time.Millisecond, Loops: 2,
			Throughput: limit.Per(1200, time.Minute), ThroughputMode: AllThreads},
		Sink: c.sink, Started: func(s time.Time) { start = s }})
	if err != nil {
		t.Fatal(err)
	}
	first := map[int]time.Time{}
	last := map[int]time.Time{}
	for _, r := range c.sorted() {
		if _, ok := first[r.Thread]; !ok {
			first[r.Thread] = r.Start
		}
		last[r.Thread] = r.Start
	}
	for th := 1; th <= 4; th++ {
		if d := first[th].Sub(start); d < time.Duration(th-1)*100*time.Millisecond {
			t.Errorf("thread %d started at %v", th, d)
		}
		// The second sample waits for the timer: the active count is the
		// threads started by then (1..4), times 50 ms, less the sample time.
		if gap := last[th].Sub(first[th]); gap < 40*time.Millisecond {
			t.Errorf("thread %d: second sample %v after the first", th, gap)
		}
	}
}

func TestInterruptStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	var c collect
	begin := time.Now()
	st, err := Run(ctx, Config{Plan: plan(t, serve(t, &limitServer{delay: 20 * time.Millisecond})),
		Workload: Workload{Threads: 3, Duration: time.Minute}, Sink: c.sink})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 2*time.Second || !st.Interrupted || st.Sent == 0 {
		t.Fatalf("took %v, %+v", took, st)
	}
	for _, r := range c.sorted() {
		if r.Error != "" {
			t.Fatalf("interrupted request reported as a result: %+v", r)
		}
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel2)
	st, _ = Run(ctx2, Config{Plan: plan(t, serve(t, &limitServer{})),
		Workload: Workload{Rate: limit.Per(50, time.Second), Duration: time.Minute}, Sink: c.sink})
	if !st.Interrupted || st.End.Sub(st.Start) > 2*time.Second {
		t.Fatalf("open model: %+v", st)
	}
}

func TestRunRefusesUnbounded(t *testing.T) {
	_, err := Run(context.Background(), Config{Plan: plan(t, "http://127.0.0.1:1/"), Workload: Workload{Threads: 10}, Sink: func(*Result) {}})
	if err == nil || !strings.Contains(err.Error(), "unbounded") {
		t.Fatalf("error %v", err)
	}
}

func TestTemplatesAndDataEndToEnd(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Text string }
		json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		seen[r.Method+" "+r.URL.Path+" "+r.Header.Get("X-User")+" "+body.Text]++
		mu.Unlock()
	}))
	data, _ := ReadData(strings.NewReader("id,user\ns1,ann\ns2,bob\n"), DataPerThread)
	s := &Scenario{Headers: []Header{{"X-User", "{{.user}}"}}, Requests: []RequestSpec{{
		Method: "PUT", URL: url + "/scripts/{{.id}}", Body: `{"text":"t{{.Thread}}-{{.Iteration}}"}`}}}
	p, err := s.Compile(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), Config{Plan: p, Workload: Workload{Threads: 2, Loops: 3}, Sink: func(*Result) {}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for th := 1; th <= 2; th++ {
		for it := range 3 {
			row := [][2]string{{"s1", "ann"}, {"s2", "bob"}}[it%2] // each thread its own cursor
			want[fmt.Sprintf("PUT /scripts/%s %s t%d-%d", row[0], row[1], th, it)]++
		}
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("server saw %v\nwant %v", seen, want)
	}
}

func TestClientCredentials(t *testing.T) {
	var tokens atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		if id, secret, _ := r.BasicAuth(); id != "cid" || secret != "sec" {
			w.WriteHeader(401)
			return
		}
		tokens.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"tok","token_type":"bearer","expires_in":3600}`)
	})
	var authed atomic.Int64
	mux.HandleFunc("GET /api", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer tok" {
			authed.Add(1)
		}
	})
	url := serve(t, mux)
	ctx := context.Background()
	if _, err := NewClient(ctx, ClientConfig{Auth: Auth{TokenURL: url + "/oauth/token", ClientID: "cid", ClientSecret: "bad"}}); err == nil {
		t.Fatal("bad credentials accepted before the run")
	}
	client, err := NewClient(ctx, ClientConfig{Auth: Auth{TokenURL: url + "/oauth/token", ClientID: "cid", ClientSecret: "sec"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(ctx, Config{Plan: plan(t, url+"/api"), Client: client, Workload: Workload{Threads: 2, Loops: 3}, Sink: func(*Result) {}}); err != nil {
		t.Fatal(err)
	}
	if authed.Load() != 6 || tokens.Load() != 1 {
		t.Fatalf("authorized %d of 6, tokens fetched %d", authed.Load(), tokens.Load())
	}
}
