package probe_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ratelab/limit"
)

// plainServer is a rate-limited endpoint that sends no rate-limit headers
// at all: a 429 with an empty body, or a 200. Its limits are GCRA tiers
// over limit.MemoryStore: per resource (the path), per endpoint (every
// path), each optionally per client (the Authorization header). It counts
// every request it receives and when it arrived.
type plainServer struct {
	url         string
	perResource *limit.Policy
	perEndpoint *limit.Policy
	perClient   bool
	// fail makes every response a 500 while set.
	fail atomic.Bool

	store    *limit.MemoryStore
	count    atomic.Int64
	mu       sync.Mutex
	arrivals []time.Time
}

func newPlainServer(t *testing.T, perResource, perEndpoint *limit.Policy) *plainServer {
	t.Helper()
	ps := &plainServer{perResource: perResource, perEndpoint: perEndpoint,
		store: limit.NewMemoryStore(limit.MemoryConfig{})}
	srv := httptest.NewServer(http.HandlerFunc(ps.serve))
	ps.url = srv.URL
	t.Cleanup(func() {
		srv.Close()
		ps.store.Close()
	})
	return ps
}

func (ps *plainServer) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	ps.count.Add(1)
	ps.mu.Lock()
	ps.arrivals = append(ps.arrivals, now)
	ps.mu.Unlock()
	if ps.fail.Load() {
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	}
	who := ""
	if ps.perClient {
		who = r.Header.Get("Authorization") + "|"
	}
	var tiers []limit.Tier
	if ps.perResource != nil {
		tiers = append(tiers, limit.Tier{Policy: ps.perResource, Key: who + r.URL.Path})
	}
	if ps.perEndpoint != nil {
		tiers = append(tiers, limit.Tier{Policy: ps.perEndpoint, Key: who + "endpoint"})
	}
	var d limit.Decision
	if err := ps.store.Decide(r.Context(), &limit.Request{Tiers: tiers, Cost: 1}, &d); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if !d.Allowed {
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	w.Write([]byte("ok"))
}

// maxInWindow returns the most requests that arrived within any window of
// length w.
func (ps *plainServer) maxInWindow(w time.Duration) int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	best, j := 0, 0
	for i := range ps.arrivals {
		for ps.arrivals[i].Sub(ps.arrivals[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

func mustRate(t *testing.T, s string) limit.Rate {
	t.Helper()
	r, err := limit.ParseRate(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func policy(t *testing.T, name, rate string, burst int64) *limit.Policy {
	t.Helper()
	p := &limit.Policy{Name: name, Rate: mustRate(t, rate), Burst: burst}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

func authHeader(s string) string { return "Bearer " + strings.TrimSpace(s) }
