package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"ratelab"
	"ratelab/httpapi"
	"ratelab/wire"
)

// The algorithms of issue 12 through the server, on every limiter the
// suite runs on (memory, Redis, Redis Cluster).
func init() {
	suite = append(suite,
		struct {
			name string
			fn   func(t *testing.T, lf limiterFactory)
		}{"FixedWindow", testFixedWindow},
		struct {
			name string
			fn   func(t *testing.T, lf limiterFactory)
		}{"FixedWindowAnyRate", testFixedWindowAnyRate},
		struct {
			name string
			fn   func(t *testing.T, lf limiterFactory)
		}{"SlidingWindowCountRejected", testSlidingWindowCountRejected},
		struct {
			name string
			fn   func(t *testing.T, lf limiterFactory)
		}{"Concurrency", testConcurrency},
	)
}

func algorithmPolicies(t *testing.T, doc string) *httpapi.Policies {
	t.Helper()
	ps, err := httpapi.ParsePolicies("algorithms.yaml", []byte("policies:\n"+doc))
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// alignClock moves clk to off past the start of a window of w.
func alignClock(clk *clock, w, off time.Duration) {
	now := clk.ns.Load()
	clk.Advance(w - time.Duration(now%int64(w)) + off)
}

// testFixedWindow: 3 per 10 s in epoch-aligned windows. Two seconds into
// a window three requests pass, the fourth is rejected with the exact
// wait to the window's end (8 s), in the headers and the body, and the
// next window admits again at its first instant.
func testFixedWindow(t *testing.T, lf limiterFactory) {
	clk := newClock()
	alignClock(clk, 10*time.Second, 2*time.Second)
	e := newEnv(t, lf, options{clock: clk, policies: algorithmPolicies(t, `
  - {name: client-window, algorithm: fixed-window, rate: 3/10s, scope: client, classes: [users]}
`)})
	c := e.client("acme")
	tok := e.token(c)
	for i := range 3 {
		r := e.do("GET", "/api/v2/users", tok, nil).want(200)
		if got, want := r.header.Get("RateLimit"), fmt.Sprintf(`"client-window";r=%d;t=%d`, 2-i, 8-i); got != want {
			t.Errorf("request %d: RateLimit %q, want %q", i+1, got, want)
		}
		if got := r.header.Get("RateLimit-Policy"); got != `"client-window";q=3;w=10` {
			t.Errorf("RateLimit-Policy %q", got)
		}
		clk.Advance(time.Second)
	}
	// Five seconds into the window: five to go.
	r := e.do("GET", "/api/v2/users", tok, nil).want(429)
	if r.header.Get("Retry-After") != "5" {
		t.Errorf("Retry-After %q, want 5", r.header.Get("Retry-After"))
	}
	b := r.errBody()
	want := wire.LimitState{Policy: "client-window", Algorithm: "fixed-window", Scope: wire.ScopeClient, Key: c.id,
		Limit: 3, Window: "10s", Remaining: 0, ResetAfterMs: 5000, RetryAfterMs: 5000}
	if b.Limit == nil || *b.Limit != want {
		t.Fatalf("limit %+v, want %+v", b.Limit, want)
	}
	if wantMsg := "client-window allows 3 per 10 seconds in fixed windows, for client " + c.id + "; retry in 5000 ms"; b.Message != wantMsg {
		t.Errorf("message %q, want %q", b.Message, wantMsg)
	}
	clk.Advance(5*time.Second - time.Millisecond)
	e.do("GET", "/api/v2/users", tok, nil).want(429)
	clk.Advance(time.Millisecond)
	e.do("GET", "/api/v2/users", tok, nil).want(200)
	st := limitsOf(e, tok)["client-window"]
	if st.Algorithm != "fixed-window" || st.Limit != 3 || st.Window != "10s" || st.Burst != 0 || st.Remaining != 2 || st.ResetAfterMs != 10000 {
		t.Errorf("ratelimits: %+v", st)
	}
}

// testFixedWindowAnyRate: a fixed window of 30 per 10 s admits exactly
// 30 in each aligned window whatever the sending rate (all at once, 10/s,
// 4/s), and the 31st is rejected with the exact wait to the window's end.
func testFixedWindowAnyRate(t *testing.T, lf limiterFactory) {
	const w = 10 * time.Second
	for _, tc := range []struct {
		name string
		step time.Duration // between requests; 0: all at one instant
		n    int           // requests per window
	}{{"at once", 0, 40}, {"10/s", 100 * time.Millisecond, 100}, {"4/s", 250 * time.Millisecond, 40}} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			alignClock(clk, w, 0)
			e := newEnv(t, lf, options{clock: clk, policies: algorithmPolicies(t, `
  - {name: client-window, algorithm: fixed-window, rate: 30/10s, scope: client, classes: [users]}
`)})
			tok := e.token(e.client("acme"))
			for win := range 2 {
				start := clk.Now()
				admitted, checked := 0, false
				for i := range tc.n {
					r := e.do("GET", "/api/v2/users", tok, nil)
					switch {
					case r.status == 200:
						admitted++
					case r.status != 429:
						t.Fatalf("window %d request %d: %d %s", win, i, r.status, r.body)
					case admitted == 30 && i == 30:
						// The 31st: the exact wait to the window's end.
						checked = true
						want := start.Add(w).Sub(clk.Now())
						if b := r.errBody(); b.Limit.RetryAfterMs != want.Milliseconds() {
							t.Errorf("window %d: 31st retry-after %d ms, want %d", win, b.Limit.RetryAfterMs, want.Milliseconds())
						}
					}
					clk.Advance(tc.step)
				}
				if !checked {
					t.Errorf("window %d: the 31st request was not the first rejected", win)
				}
				if admitted != 30 {
					t.Errorf("window %d: admitted %d of %d, want 30", win, admitted, tc.n)
				}
				clk.ns.Store(start.Add(w).UnixNano())
			}
		})
	}
}

// testSlidingWindowCountRejected: a sliding window of 4 per 10 s that
// counts rejected requests. A client that keeps sending once a second
// (twice the rate) never gets through again: each rejection is counted,
// so the weighted count never falls to the quota. Once it pauses for two
// windows, it is admitted again.
func testSlidingWindowCountRejected(t *testing.T, lf limiterFactory) {
	clk := newClock()
	alignClock(clk, 10*time.Second, 0)
	e := newEnv(t, lf, options{clock: clk, policies: algorithmPolicies(t, `
  - {name: client-sliding, algorithm: sliding-window, rate: 4/10s, count_rejected: true, scope: client, classes: [users]}
`)})
	c := e.client("acme")
	tok := e.token(c)
	var admitted []int
	for i := range 40 {
		if r := e.do("GET", "/api/v2/users", tok, nil); r.status == 200 {
			admitted = append(admitted, i)
		} else if r.status != 429 {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		} else if i == 4 {
			b := r.errBody()
			if b.Limit == nil || b.Limit.Algorithm != "sliding-window" || !b.Limit.CountRejected || b.Limit.Limit != 4 || b.Limit.Window != "10s" {
				t.Errorf("limit %+v", b.Limit)
			}
			if !strings.Contains(b.Message, "allows 4 per 10 seconds in a sliding window") {
				t.Errorf("message %q", b.Message)
			}
		}
		clk.Advance(time.Second)
	}
	if fmt.Sprint(admitted) != "[0 1 2 3]" {
		t.Fatalf("admitted %v of 40 sent at 1/s, want only the first 4", admitted)
	}
	clk.Advance(20 * time.Second)
	e.do("GET", "/api/v2/users", tok, nil).want(200)
}

// limitsOf returns GET /api/v2/ratelimits by policy name.
func limitsOf(e *env, tok string) map[string]wire.LimitState {
	e.t.Helper()
	var rl wire.RateLimits
	e.do("GET", "/api/v2/ratelimits", tok, nil).want(200).decode(&rl)
	out := map[string]wire.LimitState{}
	for _, st := range rl.Policies {
		out[st.Policy] = st
	}
	return out
}

// blocker holds FindScript of scripts named "slow…" until a value on
// release or the request's end, and panics on "boom".
type blocker struct {
	ratelab.ScriptService
	entered chan string
	release chan struct{}
	left    chan string
}

func (b *blocker) FindScript(ctx context.Context, orgID, id string) (*ratelab.Script, error) {
	switch {
	case id == "boom":
		panic("boom")
	case strings.HasPrefix(id, "slow"):
		b.entered <- id
		select {
		case <-b.release:
		case <-ctx.Done():
		}
		defer func() { b.left <- id }()
	}
	return b.ScriptService.FindScript(ctx, orgID, id)
}

// testConcurrency: at most 2 reads in flight per client. With two slow
// reads held, the third is rejected in the concurrency's terms; as soon
// as one completes a read is admitted again. A slot is also freed when
// the client goes away mid-request and when the handler panics.
func testConcurrency(t *testing.T, lf limiterFactory) {
	clk := newClock()
	b := &blocker{entered: make(chan string, 4), release: make(chan struct{}), left: make(chan string, 4)}
	e := newEnv(t, lf, options{clock: clk, scripts: func(s ratelab.ScriptService) ratelab.ScriptService { b.ScriptService = s; return b },
		policies: algorithmPolicies(t, `
  - {name: reads-in-flight, algorithm: concurrency, concurrency: 2, lease: 30s, scope: client, classes: [script-reads]}
`)})
	c := e.client("acme")
	tok := e.token(c)
	inFlight := func() int64 { return 2 - limitsOf(e, tok)["reads-in-flight"].Remaining }
	ctx, cancel := context.WithCancel(context.Background())
	// Runs before the server's Close: a failed test leaves no handler held.
	t.Cleanup(func() { close(b.release); cancel() })
	var wg sync.WaitGroup
	statuses := make(chan int, 2)
	get := func(ctx context.Context, id string) {
		defer wg.Done()
		req, _ := http.NewRequestWithContext(ctx, "GET", e.url+"/api/v2/architect/scripts/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := e.hc.Do(req)
		if err != nil {
			statuses <- -1
			return
		}
		res.Body.Close()
		statuses <- res.StatusCode
	}
	wg.Add(2)
	go get(context.Background(), "slow1")
	go get(ctx, "slow2")
	<-b.entered
	<-b.entered
	if n := inFlight(); n != 2 {
		t.Fatalf("%d in flight, want 2", n)
	}
	r := e.do("GET", "/api/v2/architect/scripts/fast", tok, nil).want(429)
	if got := r.header.Get("RateLimit-Policy"); got != `"reads-in-flight";q=2;qu="concurrent-requests"` {
		t.Errorf("RateLimit-Policy %q", got)
	}
	eb := r.errBody()
	want := wire.LimitState{Policy: "reads-in-flight", Algorithm: "concurrency", Scope: wire.ScopeClient, Key: c.id,
		Limit: 2, Lease: "30s", Remaining: 0, ResetAfterMs: 30000, RetryAfterMs: 30000}
	if eb.Limit == nil || *eb.Limit != want {
		t.Errorf("limit %+v, want %+v", eb.Limit, want)
	}
	if wantMsg := "reads-in-flight allows 2 requests in flight, for client " + c.id + "; retry in 30000 ms"; eb.Message != wantMsg {
		t.Errorf("message %q, want %q", eb.Message, wantMsg)
	}

	// One completes: its slot is free before its response arrives.
	b.release <- struct{}{}
	if st := <-statuses; st != 404 {
		t.Fatalf("slow read: %d, want its normal 404", st)
	}
	<-b.left
	e.do("GET", "/api/v2/architect/scripts/fast", tok, nil).want(404)
	if n := inFlight(); n != 1 {
		t.Fatalf("%d in flight after one completed, want 1", n)
	}

	// A panicking handler frees its slot: the 500 is written after it.
	e.do("GET", "/api/v2/architect/scripts/boom", tok, nil).want(500)
	if n := inFlight(); n != 1 {
		t.Fatalf("%d in flight after a panic, want 1", n)
	}

	// The client of the other slow read goes away: the handler ends with
	// the request's context, and the slot is freed.
	cancel()
	if st := <-statuses; st != -1 {
		t.Fatalf("cancelled read: status %d", st)
	}
	<-b.left
	deadline := time.Now().Add(5 * time.Second)
	for inFlight() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d in flight 5 s after the client went away, want 0", inFlight())
		}
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
}
