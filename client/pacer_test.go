package client

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"ratelab/limit"
	"ratelab/wire"
)

// hdr builds response headers as the server writes them.
func hdr(policy, ratelimit string) http.Header {
	h := http.Header{}
	h.Set("RateLimit-Policy", policy)
	h.Set("RateLimit", ratelimit)
	return h
}

// TestPacerFromHeadersAlone walks fixed instants: a pacer that knows
// nothing learns a kind from its first (teacher) response, then admits
// exactly what the advertised bucket holds, waits the exact interval, and
// treats per-script buckets separately once it knows their scope.
func TestPacerFromHeadersAlone(t *testing.T) {
	p := newPacer(0)
	t0 := time.Unix(1000, 0)
	tk := p.reserve(kindPutScript, []string{"a"}, t0)
	if !tk.teacher {
		t.Fatalf("first request of a kind: %+v, want teacher", tk)
	}
	if other := p.reserve(kindPutScript, []string{"a"}, t0); other.learn == nil {
		t.Fatalf("second request while learning: %+v, want to wait for the teacher", other)
	}
	// The server: per-script 2/s burst 4 (w=2), and a roomy org policy.
	h := hdr(`"org";q=1000;w=1, "per-script";q=4;w=2`, `"per-script";r=3;t=1`)
	p.learn(kindPutScript, []string{"a"}, tk, observed{status: 200, adv: limit.ParseHeaders(h, t0)}, t0)
	if !p.wantsRefresh() {
		t.Error("new policies should ask for their exact values")
	}
	// Scope unknown: one bucket. The teacher was charged, so 3 remain.
	for i := range 3 {
		if tk := p.reserve(kindPutScript, []string{"a"}, t0); !tk.goes() {
			t.Fatalf("request %d: %+v, want admitted", i+2, tk)
		}
	}
	if tk := p.reserve(kindPutScript, []string{"b"}, t0); tk.wait != 500*time.Millisecond {
		t.Fatalf("5th request: %+v, want a wait of exactly one interval", tk)
	}
	// Exact values with scope: per-script buckets are per script.
	p.learnAll([]wire.LimitState{
		{Policy: "org", Scope: wire.ScopeOrg, Limit: 1000, Window: "1s", Burst: 1000, Remaining: 996},
		{Policy: "per-script", Scope: wire.ScopeOrgScript, Key: "zzz", Limit: 2, Window: "1s", Burst: 4, Remaining: 4},
	}, t0)
	for i := range 4 {
		if tk := p.reserve(kindPutScript, []string{"b"}, t0); !tk.goes() {
			t.Fatalf("script b request %d: %+v", i+1, tk)
		}
	}
	if w := p.scriptWait(kindBulk, "b", t0); w != 500*time.Millisecond {
		t.Fatalf("script b after its burst: wait %v", w)
	}
	if w := p.scriptWait(kindBulk, "c", t0); w != 0 {
		t.Fatalf("script c untouched: wait %v (bulk borrows PUT's policies)", w)
	}
	if tk := p.reserve(kindPutScript, []string{"b"}, t0.Add(500*time.Millisecond)); !tk.goes() {
		t.Fatalf("one interval later: %+v", tk)
	}
	// A bulk's response lists the per-script policy once per script; the
	// pacer still charges each script once.
	bh := hdr(`"org";q=1000;w=1, "per-script";q=4;w=2, "per-script";q=4;w=2`, `"org";r=990;t=1`)
	p.learn(kindBulk, []string{"x", "y"}, ticket{}, observed{status: 200, adv: limit.ParseHeaders(bh, t0)}, t0)
	if tk := p.reserve(kindBulk, []string{"x", "y"}, t0); !tk.goes() {
		t.Fatalf("bulk of x and y: %+v", tk)
	}
	for i := range 3 {
		if w := p.scriptWait(kindBulk, "x", t0); w != 0 {
			t.Fatalf("script x after %d bulk charges: wait %v", i+1, w)
		}
		p.reserve(kindPutScript, []string{"x"}, t0)
	}
	if w := p.scriptWait(kindBulk, "x", t0); w != 500*time.Millisecond {
		t.Fatalf("script x after 4 writes: wait %v", w)
	}
	// A bulk draws one unit from each script's bucket, all or nothing.
	if tk := p.reserve(kindBulk, []string{"b", "c"}, t0.Add(500*time.Millisecond)); tk.wait != 500*time.Millisecond {
		t.Fatalf("bulk with an exhausted script: %+v", tk)
	}
	if w := p.scriptWait(kindBulk, "c", t0.Add(500*time.Millisecond)); w != 0 {
		t.Fatalf("a rejected bulk consumed script c: wait %v", w)
	}
}

// TestPacerMargin checks that the margin keeps the local tolerance below
// the server's, and that a burst too small for it still paces.
func TestPacerMargin(t *testing.T) {
	p := newPacer(25 * time.Millisecond)
	t0 := time.Unix(1000, 0)
	p.learnAll([]wire.LimitState{{Policy: "w", Scope: wire.ScopeOrg, Limit: 2, Window: "1s", Burst: 2, Remaining: 2}}, t0)
	p.kinds[kindPutScript] = []string{"w"}
	// τ = 1 s, T = 0.5 s; τ − margin = 0.975 s: the 2nd request would
	// bring the backlog to 1 s > 0.975 s, so it waits 25 ms.
	if tk := p.reserve(kindPutScript, nil, t0); !tk.goes() {
		t.Fatalf("1st: %+v", tk)
	}
	if tk := p.reserve(kindPutScript, nil, t0); tk.wait != 25*time.Millisecond {
		t.Fatalf("2nd: %+v, want the margin", tk)
	}
	q := newPacer(25 * time.Millisecond)
	q.learnAll([]wire.LimitState{{Policy: "one", Scope: wire.ScopeOrg, Limit: 1, Window: "1s", Burst: 1, Remaining: 1}}, t0)
	q.kinds[kindPutScript] = []string{"one"}
	if tk := q.reserve(kindPutScript, nil, t0); !tk.goes() {
		t.Fatalf("burst 1, first: %+v", tk)
	}
	if tk := q.reserve(kindPutScript, nil, t0); tk.wait != time.Second+25*time.Millisecond {
		t.Fatalf("burst 1, second: %+v, want the interval plus the margin", tk)
	}
}

// TestPacerSyncAnd429 checks that responses only ever slow the pacer
// down: a remaining quota below the local one moves the bucket forward,
// and a 429 holds it for exactly the server's delay plus the jitter.
func TestPacerSyncAnd429(t *testing.T) {
	p := newPacer(0)
	t0 := time.Unix(1000, 0)
	p.learnAll([]wire.LimitState{
		{Policy: "org", Scope: wire.ScopeOrg, Limit: 10, Window: "1s", Burst: 10, Remaining: 10},
		{Policy: "per-script", Scope: wire.ScopeOrgScript, Limit: 2, Window: "1s", Burst: 4, Remaining: 4},
	}, t0)
	p.kinds[kindPutScript] = []string{"org", "per-script"}
	// Another client of the org used 8: the server says 1 remains after ours.
	if tk := p.reserve(kindPutScript, []string{"a"}, t0); !tk.goes() {
		t.Fatal(tk)
	}
	p.learn(kindPutScript, []string{"a"}, ticket{}, observed{status: 200, adv: limit.ParseHeaders(hdr(`"org";q=10;w=1, "per-script";q=4;w=2`, `"org";r=1;t=1`), t0)}, t0)
	if tk := p.reserve(kindPutScript, []string{"b"}, t0); !tk.goes() {
		t.Fatalf("the one remaining: %+v", tk)
	}
	if tk := p.reserve(kindPutScript, []string{"c"}, t0); tk.wait != 100*time.Millisecond {
		t.Fatalf("after the org's quota: %+v", tk)
	}
	// A higher remaining never speeds the pacer up.
	p.learn(kindPutScript, []string{"a"}, ticket{}, observed{status: 200, adv: limit.ParseHeaders(hdr(`"org";q=10;w=1, "per-script";q=4;w=2`, `"org";r=9;t=1`), t0)}, t0)
	if tk := p.reserve(kindPutScript, []string{"c"}, t0); tk.wait != 100*time.Millisecond {
		t.Fatalf("after a stale remaining: %+v", tk)
	}
	// A 429 on script d: the body names the policy, the key and the delay.
	t1 := t0.Add(2 * time.Second)
	body, err := json.Marshal(wire.ErrorBody{Code: "too_many_requests", Status: 429,
		Limit: &wire.LimitState{Policy: "per-script", Scope: wire.ScopeOrgScript, Key: "d", Limit: 2, Window: "1s", Burst: 4, RetryAfterMs: 300}})
	if err != nil {
		t.Fatal(err)
	}
	h := hdr(`"org";q=10;w=1, "per-script";q=4;w=2`, `"per-script";r=0;t=2`)
	h.Set("Retry-After", "1")
	p.learn(kindPutScript, []string{"d"}, ticket{}, observed{status: 429, adv: limit.ParseResponse(h, body, t1), jitter: 7 * time.Millisecond}, t1)
	if tk := p.reserve(kindPutScript, []string{"d"}, t1); tk.wait != 307*time.Millisecond {
		t.Fatalf("after a 429: %+v, want retryAfterMs + jitter", tk)
	}
	if tk := p.reserve(kindPutScript, []string{"e"}, t1); !tk.goes() {
		t.Fatalf("another script after d's 429: %+v", tk)
	}
	if !p.wantsRefresh() {
		t.Error("a 429 should ask for the exact policies again")
	}
	// Without a body, Retry-After decides.
	t2 := t1.Add(time.Second)
	p.learn(kindPutScript, []string{"f"}, ticket{}, observed{status: 429, adv: limit.ParseResponse(h, nil, t2)}, t2)
	if tk := p.reserve(kindPutScript, []string{"f"}, t2); tk.wait != time.Second {
		t.Fatalf("after a 429 without a body: %+v, want Retry-After's second", tk)
	}
}

// TestPacerPolicyChange: when a response advertises other q or w than
// the exact values the pacer holds, the header's values take over at once.
func TestPacerPolicyChange(t *testing.T) {
	p := newPacer(0)
	t0 := time.Unix(1000, 0)
	p.learnAll([]wire.LimitState{{Policy: "per-script", Scope: wire.ScopeOrgScript, Limit: 5, Window: "1s", Burst: 5, Remaining: 5}}, t0)
	p.learn(kindPutScript, []string{"a"}, ticket{}, observed{status: 200, adv: limit.ParseHeaders(hdr(`"per-script";q=5;w=1`, `"per-script";r=4;t=1`), t0)}, t0)
	if p.wantsRefresh() {
		t.Fatal("unchanged policy asked for a refresh")
	}
	p.learn(kindPutScript, []string{"a"}, ticket{}, observed{status: 200, adv: limit.ParseHeaders(hdr(`"per-script";q=10;w=1`, `"per-script";r=9;t=1`), t0)}, t0)
	if !p.wantsRefresh() {
		t.Fatal("changed policy did not ask for a refresh")
	}
	pp, _ := p.policy("per-script")
	if pp.Burst != 10 || pp.Interval() != 100*time.Millisecond || pp.scope != wire.ScopeOrgScript || pp.exact {
		t.Fatalf("after the change: %+v", pp)
	}
}

// TestPacerWaitsForWindowReset: responses in a dialect without
// RateLimit-Policy (GitHub's) that say the window is spent hold the kind
// until the reset they give, with the request in flight counted; a
// window's remaining quota is not paced at any rate.
func TestPacerWaitsForWindowReset(t *testing.T) {
	p := newPacer(0)
	t0 := time.Unix(1_800_000_000, 0)
	gh := func(remaining int) http.Header {
		h := http.Header{}
		h.Set("x-ratelimit-limit", "3")
		h.Set("x-ratelimit-remaining", strconv.Itoa(remaining))
		h.Set("x-ratelimit-resource", "core")
		h.Set("x-ratelimit-reset", strconv.FormatInt(t0.Add(5*time.Second).Unix(), 10))
		h.Set("Date", t0.UTC().Format(http.TimeFormat))
		return h
	}
	resp := func(remaining int) observed {
		h := gh(remaining)
		return observed{status: 200, header: h, adv: limit.ParseHeaders(h, t0)}
	}
	teacher := p.reserve(kindUsers, nil, t0)
	if !teacher.teacher {
		t.Fatalf("first request: %+v, want teacher", teacher)
	}
	p.learn(kindUsers, nil, teacher, resp(2), t0)
	// Two left, sent at once: no rate between them.
	a, b := p.reserve(kindUsers, nil, t0), p.reserve(kindUsers, nil, t0)
	if !a.goes() || !b.goes() {
		t.Fatalf("the two left: %+v, %+v, want both admitted at once", a, b)
	}
	// Both in flight: nothing is surely left.
	if tk := p.reserve(kindUsers, nil, t0); tk.wait <= 0 {
		t.Fatalf("a third with two in flight: %+v, want a wait", tk)
	}
	p.learn(kindUsers, nil, a, resp(1), t0)
	p.learn(kindUsers, nil, b, resp(0), t0)
	// The wait ends at the reset, 5 s, plus the margins (the Date says the
	// clocks agree to the second).
	tk := p.reserve(kindUsers, nil, t0.Add(time.Second))
	if lo, hi := 4*time.Second, 4*time.Second+10*time.Millisecond; tk.wait < lo || tk.wait > hi {
		t.Fatalf("with the window spent: wait %v, want %v to %v", tk.wait, lo, hi)
	}
	if tk := p.reserve(kindUsers, nil, t0.Add(5*time.Second+10*time.Millisecond)); !tk.goes() {
		t.Fatalf("after the reset: %+v, want admitted", tk)
	}
}

// TestPacerConcurrencyIsNoRate: a policy advertised with a quota and no
// window (ratelab's concurrency policy) admits that many requests at
// once, whatever their rate, and the next when one ends.
func TestPacerConcurrencyIsNoRate(t *testing.T) {
	p := newPacer(0)
	t0 := time.Unix(1000, 0)
	h := hdr(`"in-flight";q=2`, `"in-flight";r=1`)
	p.learn(kindUsers, nil, ticket{}, observed{status: 200, header: h, adv: limit.ParseHeaders(h, t0)}, t0)
	var held []ticket
	for i := range 2 {
		tk := p.reserve(kindUsers, nil, t0)
		if !tk.goes() {
			t.Fatalf("request %d of 2 in flight: %+v, want admitted", i+1, tk)
		}
		held = append(held, tk)
	}
	third := p.reserve(kindUsers, nil, t0)
	if third.learn == nil || third.wait != 0 {
		t.Fatalf("a third with 2 in flight: %+v, want to wait for one to end (no timed wait)", third)
	}
	p.abandon(kindUsers, held[0])
	select {
	case <-third.learn:
	default:
		t.Fatal("a request that ended did not wake the waiting one")
	}
	if tk := p.reserve(kindUsers, nil, t0); !tk.goes() {
		t.Fatalf("after one ended: %+v, want admitted", tk)
	}
}
