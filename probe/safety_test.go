package probe_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"ratelab/limit"
	"ratelab/load"
	"ratelab/probe"
)

func plainConfig(t *testing.T, srv *plainServer, maxRate string, budget int) probe.Config {
	return probe.Config{
		Request: load.RequestSpec{URL: srv.url + "/things/1"},
		Client:  &http.Client{Timeout: 5 * time.Second},
		MaxRate: mustRate(t, maxRate),
		Budget:  budget,
	}
}

func TestProbeRefusesWithoutBounds(t *testing.T) {
	srv := newPlainServer(t, policy(t, "p", "2/s", 5), nil)
	for name, mod := range map[string]func(*probe.Config){
		"no max rate": func(c *probe.Config) { c.MaxRate = limit.Rate{} },
		"no budget":   func(c *probe.Config) { c.Budget = 0 },
	} {
		cfg := plainConfig(t, srv, "100/s", 100)
		mod(&cfg)
		if _, err := probe.Run(context.Background(), cfg); err == nil {
			t.Errorf("%s: probe started", name)
		}
	}
	if n := srv.count.Load(); n != 0 {
		t.Errorf("server received %d requests from refused probes", n)
	}
}

func TestProbeBudgetIsHard(t *testing.T) {
	// A slow limit with a large burst: its burst alone is more than 10.
	srv := newPlainServer(t, policy(t, "p", "1/s", 30), nil)
	rep, err := probe.Run(context.Background(), plainConfig(t, srv, "100/s", 10))
	if err != nil {
		t.Fatal(err)
	}
	if n := srv.count.Load(); n > 10 || rep.RequestsUsed != n {
		t.Errorf("server counted %d requests, report %d, budget 10", n, rep.RequestsUsed)
	}
	if !strings.Contains(rep.Stopped, "budget") {
		t.Errorf("stopped %q, want the budget named", rep.Stopped)
	}
}

func TestProbeMaxRateIsHard(t *testing.T) {
	srv := newPlainServer(t, policy(t, "p", "20/s", 10), nil)
	rep, err := probe.Run(context.Background(), plainConfig(t, srv, "100/s", 2000))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stopped != "" {
		t.Fatalf("stopped: %s", rep.Stopped)
	}
	// At 100/s (k = 1) sends are 10 ms apart: any 100 ms holds at most 11,
	// and any second at most 101; allow one more for arrival jitter.
	if got := srv.maxInWindow(time.Second); got > 102 {
		t.Errorf("%d requests arrived within one second at max-rate 100/s", got)
	}
	if got := srv.maxInWindow(100 * time.Millisecond); got > 12 {
		t.Errorf("%d requests arrived within 100 ms at max-rate 100/s", got)
	}
}

func TestProbeStopsOnServerErrors(t *testing.T) {
	srv := newPlainServer(t, policy(t, "p", "2/s", 5), nil)
	srv.fail.Store(true)
	rep, err := probe.Run(context.Background(), plainConfig(t, srv, "100/s", 1000))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.Stopped, "consecutive server or network errors") || !strings.Contains(rep.Stopped, "500") {
		t.Errorf("stopped %q, want the error run and its status", rep.Stopped)
	}
	// Five errors stop it; requests already in flight may add a few.
	if n := srv.count.Load(); n > 5+10 {
		t.Errorf("%d requests against a failing server", n)
	}
}

func TestProbeInterruptReportsSoFar(t *testing.T) {
	srv := newPlainServer(t, policy(t, "p", "1/s", 3), nil)
	ctx, cancel := context.WithCancel(context.Background())
	// The probe is still measuring after 1.5 s.
	time.AfterFunc(1500*time.Millisecond, cancel)
	start := time.Now()
	rep, err := probe.Run(ctx, plainConfig(t, srv, "100/s", 2000))
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("took %v after the interrupt", time.Since(start))
	}
	if !strings.Contains(rep.Stopped, probe.ErrInterrupted.Error()) {
		t.Errorf("stopped %q, want interrupted", rep.Stopped)
	}
	// What was learned so far: the family, and a rate interval that holds
	// the true 1/s (not yet pinned to 5 %).
	if len(rep.Limits) != 1 || rep.Limits[0].Algorithm != "token-bucket" || rep.Limits[0].RateLow > 1 || rep.Limits[0].RateHigh < 1 {
		t.Errorf("limits %+v: want the token bucket learned before the interrupt", rep.Limits)
	}
}

// TestProbeLimitsEndpointPassesTheGate: the limits endpoint is read through
// the same gate as every other request, so it counts against the budget
// and keeps the maximum rate's spacing from the request before it.
func TestProbeLimitsEndpointPassesTheGate(t *testing.T) {
	srv := newPlainServer(t, policy(t, "p", "2/s", 5), nil)
	var mu sync.Mutex
	var limitsAt, firstAt time.Time
	mux := http.NewServeMux()
	mux.HandleFunc("/limits", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		limitsAt = time.Now()
		mu.Unlock()
		w.Write([]byte(`{"policies":[{"name":"p","limit":2,"window":"1s","burst":5}]}`))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if firstAt.IsZero() {
			firstAt = time.Now()
		}
		mu.Unlock()
		srv.serve(w, r)
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	cfg := plainConfig(t, srv, "5/s", 20)
	cfg.Request.URL = ts.URL + "/things/1"
	cfg.LimitsURL = ts.URL + "/limits"
	rep, err := probe.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if limitsAt.IsZero() || firstAt.IsZero() {
		t.Fatal("the limits endpoint or the probed one was not called")
	}
	// The server sees arrivals, which a loaded machine brings closer than
	// they were sent (180 ms apart with four test processes on 2 cores):
	// half the interval still tells a gated read from one sent at once.
	if gap := limitsAt.Sub(firstAt); gap < 100*time.Millisecond {
		t.Errorf("limits endpoint read %v after the first request, want about the 200 ms of max-rate 5/s (at least 100 ms)", gap)
	}
	if n := srv.count.Load(); rep.RequestsUsed != n+1 || rep.RequestsUsed > 20 {
		t.Errorf("report counts %d requests, the server %d plus the limits read; budget 20", rep.RequestsUsed, n)
	}
}
