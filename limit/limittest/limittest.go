// Package limittest is the conformance suite that every limit.Store passes.
//
// Run it from a store's tests:
//
//	func TestConformance(t *testing.T) {
//		limittest.Run(t, func(t *testing.T) limit.Store { return newStore(t) })
//	}
//
// The suite walks fixed instants (Request.Now is set everywhere but in one
// test of the store's own clock) and checks the instant each decision
// reports (Decision.At), the exact GCRA arithmetic, the all-or-nothing rule, exact retry-after, shadow
// tiers, costs above one, the over-admission bound under many goroutines,
// and a property test against a reference model on random arrivals; then
// the same for fixed windows (aligned to the epoch and to a key's first
// request), sliding windows and concurrency limits, count-rejected tiers
// and decisions that mix every algorithm: step tables, each algorithm's
// over-admission bound under many goroutines, and a property test per
// algorithm (and one for the mix) against a reference model that keeps
// every counted request and finds retry-after by search. A store must
// also implement limit.Releaser. Each
// subtest uses its own Request.Group, so a store may be shared between
// subtests and runs.
package limittest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ratelab/limit"
)

// NewStore returns the store under test. It may return the same store for
// every call.
type NewStore func(t *testing.T) limit.Store

// epoch is the suite's fixed starting instant; each subtest adds its own
// offset so that a shared store never sees time go backwards for a key.
var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

var runID = fmt.Sprintf("%x", rand.Uint64())

// group returns a group name unique to this test and run.
func group(t *testing.T) string { return "limittest/" + runID + "/" + t.Name() }

// Run runs the whole suite against stores made by newStore.
func Run(t *testing.T, newStore NewStore) {
	t.Run("StepTable", func(t *testing.T) { testStepTable(t, newStore(t)) })
	t.Run("AllOrNothing", func(t *testing.T) { testAllOrNothing(t, newStore(t)) })
	t.Run("RetryAfterExact", func(t *testing.T) { testRetryAfterExact(t, newStore(t)) })
	t.Run("Shadow", func(t *testing.T) { testShadow(t, newStore(t)) })
	t.Run("Cost", func(t *testing.T) { testCost(t, newStore(t)) })
	t.Run("ZeroCostPeeks", func(t *testing.T) { testZeroCost(t, newStore(t)) })
	t.Run("Isolation", func(t *testing.T) { testIsolation(t, newStore(t)) })
	t.Run("BadRequests", func(t *testing.T) { testBadRequests(t, newStore(t)) })
	t.Run("ConcurrentNoOverAdmission", func(t *testing.T) { testConcurrent(t, newStore(t)) })
	t.Run("PropertyRandomArrivals", func(t *testing.T) { testProperty(t, newStore(t)) })
	t.Run("DecisionInstant", func(t *testing.T) { testInstant(t, newStore(t)) })
	t.Run("DecisionInstantStoreClock", func(t *testing.T) { testInstantStoreClock(t, newStore(t)) })
	runAlgorithms(t, newStore)
}

func decide(t *testing.T, s limit.Store, req *limit.Request) *limit.Decision {
	t.Helper()
	var d limit.Decision
	if err := s.Decide(context.Background(), req, &d); err != nil {
		t.Fatalf("Decide at %v: %v", req.Now.Sub(epoch), err)
	}
	return &d
}

func policy(name string, count int64, period time.Duration, burst int64) *limit.Policy {
	return &limit.Policy{Name: name, Rate: limit.Per(count, period), Burst: burst}
}

// testStepTable walks one tier of 2/s, burst 3 (T = 500ms, τ = 1.5s)
// through fixed instants and checks every reported number.
func testStepTable(t *testing.T, s limit.Store) {
	p := policy("steps", 2, time.Second, 3)
	g := group(t)
	steps := []struct {
		at         time.Duration
		allowed    bool
		remaining  int64
		resetAfter time.Duration
		retryAfter time.Duration
	}{
		{0, true, 2, 500 * time.Millisecond, 0},
		{0, true, 1, 1000 * time.Millisecond, 0},
		{0, true, 0, 1500 * time.Millisecond, 0},
		{0, false, 0, 1500 * time.Millisecond, 500 * time.Millisecond},
		{100 * time.Millisecond, false, 0, 1400 * time.Millisecond, 400 * time.Millisecond},
		{499 * time.Millisecond, false, 0, 1001 * time.Millisecond, time.Millisecond},
		{500 * time.Millisecond, true, 0, 1500 * time.Millisecond, 0},
		{600 * time.Millisecond, false, 0, 1400 * time.Millisecond, 400 * time.Millisecond},
		{1700 * time.Millisecond, true, 1, 800 * time.Millisecond, 0},
		{10 * time.Second, true, 2, 500 * time.Millisecond, 0},
	}
	for i, st := range steps {
		d := decide(t, s, &limit.Request{Now: epoch.Add(st.at), Group: g, Cost: 1,
			Tiers: []limit.Tier{{Policy: p, Key: "k"}}})
		ts := d.Tiers[0]
		if d.Allowed != st.allowed || ts.Remaining != st.remaining || ts.ResetAfter != st.resetAfter ||
			d.RetryAfter != st.retryAfter || ts.RetryAfter != st.retryAfter {
			t.Errorf("step %d at %v: got allowed=%v remaining=%d reset=%v retry=%v (tier retry %v); want %v %d %v %v",
				i, st.at, d.Allowed, ts.Remaining, ts.ResetAfter, d.RetryAfter, ts.RetryAfter,
				st.allowed, st.remaining, st.resetAfter, st.retryAfter)
		}
		if d.Limiting != 0 {
			t.Errorf("step %d: Limiting = %d, want 0", i, d.Limiting)
		}
		if ts.Consumed != st.allowed {
			t.Errorf("step %d: Consumed = %v, want %v", i, ts.Consumed, st.allowed)
		}
	}
}

// testAllOrNothing checks that a rejection by one tier consumes nothing
// from the others, and that Limiting names the right tier.
func testAllOrNothing(t *testing.T, s limit.Store) {
	wide := policy("wide", 10, time.Second, 10) // T = 100ms, τ = 1s
	tight := policy("tight", 1, time.Second, 2) // T = 1s, τ = 2s
	g := group(t)
	both := []limit.Tier{{Policy: wide, Key: "org"}, {Policy: tight, Key: "script-1"}}
	for i := range 2 {
		d := decide(t, s, &limit.Request{Now: epoch, Group: g, Cost: 1, Tiers: both})
		if !d.Allowed {
			t.Fatalf("request %d rejected, want admitted", i)
		}
		if d.Limiting != 1 {
			t.Errorf("request %d: Limiting = %d, want 1 (tight has least remaining)", i, d.Limiting)
		}
	}
	// The tight tier is spent; five more rejections must leave the wide
	// tier exactly where it was: 8 remaining.
	for range 5 {
		d := decide(t, s, &limit.Request{Now: epoch, Group: g, Cost: 1, Tiers: both})
		if d.Allowed || d.Limiting != 1 {
			t.Fatalf("got allowed=%v limiting=%d, want rejected by tier 1", d.Allowed, d.Limiting)
		}
		if d.Tiers[0].Consumed || d.Tiers[1].Consumed {
			t.Fatalf("a rejected request consumed quota: %+v", d.Tiers)
		}
		if !d.Tiers[0].Allowed || d.Tiers[0].Remaining != 8 {
			t.Fatalf("wide tier: allowed=%v remaining=%d, want true 8", d.Tiers[0].Allowed, d.Tiers[0].Remaining)
		}
	}
	d := decide(t, s, &limit.Request{Now: epoch, Group: g, Cost: 1, Tiers: both[:1]})
	if !d.Allowed || d.Tiers[0].Remaining != 7 {
		t.Fatalf("wide alone: allowed=%v remaining=%d, want true 7", d.Allowed, d.Tiers[0].Remaining)
	}
}

// testRetryAfterExact checks that the retry-after of a rejection is exact:
// the request is rejected 1ns before it and admitted at it, and is the
// longest of several violated tiers.
func testRetryAfterExact(t *testing.T, s limit.Store) {
	a := policy("a", 3, time.Second, 1)          // T = 333333333ns
	b := policy("b", 1, 700*time.Millisecond, 1) // T = 700ms
	c := policy("c", 1000, 7*time.Second, 1000)  // never the limit here
	g := group(t)
	tiers := []limit.Tier{{Policy: a, Key: "x"}, {Policy: b, Key: "x"}, {Policy: c, Key: "x"}}
	at := epoch.Add(3 * time.Millisecond)
	if d := decide(t, s, &limit.Request{Now: at, Group: g, Cost: 1, Tiers: tiers}); !d.Allowed {
		t.Fatal("first request rejected")
	}
	d := decide(t, s, &limit.Request{Now: at.Add(time.Millisecond), Group: g, Cost: 1, Tiers: tiers})
	if d.Allowed {
		t.Fatal("second request admitted, want rejected")
	}
	if want := 699 * time.Millisecond; d.RetryAfter != want || d.Limiting != 1 {
		t.Fatalf("RetryAfter = %v limiting %d, want %v by tier 1", d.RetryAfter, d.Limiting, want)
	}
	if want := a.Interval() - time.Millisecond; d.Tiers[0].RetryAfter != want {
		t.Errorf("tier a RetryAfter = %v, want %v", d.Tiers[0].RetryAfter, want)
	}
	retryAt := at.Add(time.Millisecond + d.RetryAfter)
	if d := decide(t, s, &limit.Request{Now: retryAt.Add(-time.Nanosecond), Group: g, Cost: 1, Tiers: tiers}); d.Allowed {
		t.Fatal("admitted 1ns before RetryAfter")
	} else if d.RetryAfter != time.Nanosecond {
		t.Fatalf("1ns before: RetryAfter = %v, want 1ns", d.RetryAfter)
	}
	if d := decide(t, s, &limit.Request{Now: retryAt, Group: g, Cost: 1, Tiers: tiers}); !d.Allowed {
		t.Fatalf("rejected at RetryAfter: %+v", d)
	}
}

// testShadow checks that a shadow tier reports but never rejects, and
// that it is consumed only when it would itself admit.
func testShadow(t *testing.T, s limit.Store) {
	real := policy("real", 100, time.Second, 100)
	shadow := policy("shadow", 1, time.Second, 1)
	shadow.Shadow = true
	g := group(t)
	tiers := []limit.Tier{{Policy: real, Key: "k"}, {Policy: shadow, Key: "k"}}
	d := decide(t, s, &limit.Request{Now: epoch, Group: g, Cost: 1, Tiers: tiers})
	if !d.Allowed || !d.Tiers[1].Allowed || !d.Tiers[1].Consumed {
		t.Fatalf("first: %+v", d)
	}
	if d.Limiting != 0 {
		t.Errorf("Limiting = %d, want the enforced tier 0", d.Limiting)
	}
	for i := range 3 {
		d := decide(t, s, &limit.Request{Now: epoch, Group: g, Cost: 1, Tiers: tiers})
		if !d.Allowed {
			t.Fatalf("request %d rejected by a shadow tier", i)
		}
		if d.Tiers[1].Allowed || d.Tiers[1].Consumed || d.Tiers[1].RetryAfter != time.Second {
			t.Fatalf("shadow tier: %+v, want not allowed, not consumed, retry 1s", d.Tiers[1])
		}
		if d.RetryAfter != 0 {
			t.Fatalf("allowed decision has RetryAfter %v", d.RetryAfter)
		}
		if got := d.Tiers[0].Remaining; got != int64(98-i) {
			t.Fatalf("real tier remaining = %d, want %d", got, 98-i)
		}
	}
	// The shadow tier was not pushed further by the requests it flagged.
	if d := decide(t, s, &limit.Request{Now: epoch.Add(time.Second), Group: g, Cost: 1, Tiers: tiers[1:]}); !d.Allowed || !d.Tiers[0].Consumed {
		t.Fatalf("shadow tier still over its limit after 1s: %+v", d.Tiers[0])
	}
}

// testCost checks costs above one and their retry-after.
func testCost(t *testing.T, s limit.Store) {
	p := policy("cost", 10, time.Second, 10) // T = 100ms, τ = 1s
	g := group(t)
	tiers := []limit.Tier{{Policy: p, Key: "k"}}
	d := decide(t, s, &limit.Request{Now: epoch, Group: g, Cost: 7, Tiers: tiers})
	if !d.Allowed || d.Tiers[0].Remaining != 3 || d.Tiers[0].ResetAfter != 700*time.Millisecond {
		t.Fatalf("cost 7: %+v", d.Tiers[0])
	}
	d = decide(t, s, &limit.Request{Now: epoch, Group: g, Cost: 5, Tiers: tiers})
	if d.Allowed || d.RetryAfter != 200*time.Millisecond || d.Tiers[0].Remaining != 3 {
		t.Fatalf("cost 5 after 7: allowed=%v retry=%v remaining=%d; want false 200ms 3",
			d.Allowed, d.RetryAfter, d.Tiers[0].Remaining)
	}
	d = decide(t, s, &limit.Request{Now: epoch, Group: g, Cost: 3, Tiers: tiers})
	if !d.Allowed || d.Tiers[0].Remaining != 0 {
		t.Fatalf("cost 3: %+v", d.Tiers[0])
	}
	var ce *limit.CostError
	err := s.Decide(context.Background(), &limit.Request{Now: epoch, Group: g, Cost: 11, Tiers: tiers}, &limit.Decision{})
	if !errors.As(err, &ce) || ce.Policy != "cost" {
		t.Fatalf("cost above burst: err = %v, want *CostError", err)
	}
}

// testZeroCost checks that cost 0 reports state without consuming it.
func testZeroCost(t *testing.T, s limit.Store) {
	p := policy("peek", 1, time.Second, 2)
	g := group(t)
	tiers := []limit.Tier{{Policy: p, Key: "k"}}
	decide(t, s, &limit.Request{Now: epoch, Group: g, Cost: 1, Tiers: tiers})
	for range 3 {
		d := decide(t, s, &limit.Request{Now: epoch, Group: g, Cost: 0, Tiers: tiers})
		if !d.Allowed || d.Tiers[0].Consumed || d.Tiers[0].Remaining != 1 || d.Tiers[0].ResetAfter != time.Second {
			t.Fatalf("peek: %+v", d.Tiers[0])
		}
	}
	if d := decide(t, s, &limit.Request{Now: epoch, Group: g, Cost: 1, Tiers: tiers}); !d.Allowed {
		t.Fatal("peeks consumed quota")
	}
}

// testIsolation checks that groups, policies and keys keep separate state.
func testIsolation(t *testing.T, s limit.Store) {
	p := policy("iso", 1, time.Hour, 1)
	q := policy("iso2", 1, time.Hour, 1)
	g := group(t)
	for _, r := range []limit.Request{
		{Group: g, Tiers: []limit.Tier{{Policy: p, Key: "a"}}},
		{Group: g, Tiers: []limit.Tier{{Policy: p, Key: "b"}}},
		{Group: g, Tiers: []limit.Tier{{Policy: q, Key: "a"}}},
		{Group: g + "/other", Tiers: []limit.Tier{{Policy: p, Key: "a"}}},
	} {
		r.Now, r.Cost = epoch, 1
		if d := decide(t, s, &r); !d.Allowed {
			t.Fatalf("%s %s %s: rejected; state leaked between keys", r.Group, r.Tiers[0].Policy.Name, r.Tiers[0].Key)
		}
		if d := decide(t, s, &r); d.Allowed {
			t.Fatalf("%s %s %s: second request admitted", r.Group, r.Tiers[0].Policy.Name, r.Tiers[0].Key)
		}
	}
}

// testBadRequests checks that malformed requests are errors.
func testBadRequests(t *testing.T, s limit.Store) {
	p := policy("bad", 1, time.Second, 1)
	g := group(t)
	for name, req := range map[string]*limit.Request{
		"negative cost": {Now: epoch, Group: g, Cost: -1, Tiers: []limit.Tier{{Policy: p, Key: "k"}}},
		"nil policy":    {Now: epoch, Group: g, Cost: 1, Tiers: []limit.Tier{{Key: "k"}}},
		"zero burst":    {Now: epoch, Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: policy("z", 1, time.Second, 0), Key: "k"}}},
		"tier twice":    {Now: epoch, Group: g, Cost: 1, Tiers: []limit.Tier{{Policy: p, Key: "k"}, {Policy: p, Key: "k"}}},
		"too many":      {Now: epoch, Group: g, Cost: 1, Tiers: make([]limit.Tier, limit.MaxTiers+1)},
	} {
		if err := s.Decide(context.Background(), req, &limit.Decision{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// testInstant checks that every kind of decision reports the instant it
// was taken at, Request.Now to the nanosecond: one tier and several, plain
// GCRA and every other algorithm, admitted, rejected (which a store may
// decide without its backend) and peeks. One Decision is reused, as a
// server does, so a store that left At from the previous call fails.
func testInstant(t *testing.T, s limit.Store) {
	g := group(t)
	gcra := policy("at-gcra", 1, time.Second, 2)
	tiers := func(ps ...*limit.Policy) []limit.Tier {
		ts := make([]limit.Tier, len(ps))
		for i, p := range ps {
			ts[i] = limit.Tier{Policy: p, Key: "k"}
		}
		return ts
	}
	five := tiers(gcra, policy("at-2", 10, time.Second, 10), policy("at-3", 10, time.Second, 10),
		policy("at-4", 10, time.Second, 10), policy("at-5", 10, time.Second, 10))
	fixed := window("at-fixed", limit.FixedWindow, 2, 10*time.Second)
	sliding := window("at-sliding", limit.SlidingWindow, 2, 10*time.Second)
	conc := concurrency("at-conc", 1, 5*time.Second)
	cases := []struct {
		name  string
		tiers []limit.Tier
		cost  int64
	}{
		{"gcra", tiers(gcra), 1},
		{"gcra", tiers(gcra), 1},
		{"gcra rejected", tiers(gcra), 1},
		{"gcra peek", tiers(gcra), 0},
		{"two gcra tiers, rejected", tiers(gcra, policy("at-wide", 10, time.Second, 10)), 1},
		{"five gcra tiers, rejected", five, 1},
		{"fixed", tiers(fixed), 1},
		{"fixed", tiers(fixed), 1},
		{"fixed rejected", tiers(fixed), 1},
		{"sliding", tiers(sliding), 2},
		{"sliding rejected", tiers(sliding), 1},
		{"concurrency", tiers(conc), 1},
		{"concurrency rejected", tiers(conc), 1},
		{"mix, rejected", tiers(policy("at-mix", 10, time.Second, 10), fixed, conc), 1},
	}
	var d limit.Decision
	var leases []limit.Lease
	// Instants 1.000000123 s apart: off every whole second, millisecond
	// and microsecond, so a store that rounds the instant fails too.
	now := epoch.Add(123 * time.Nanosecond)
	for i, c := range cases {
		now = now.Add(time.Second/1000 + time.Nanosecond)
		req := &limit.Request{Now: now, Group: g, Cost: c.cost, Tiers: c.tiers}
		if err := s.Decide(context.Background(), req, &d); err != nil {
			t.Fatalf("%d %s: %v", i, c.name, err)
		}
		if want := !strings.Contains(c.name, "rejected"); d.Allowed != want {
			t.Errorf("%d %s: allowed = %v, want %v", i, c.name, d.Allowed, want)
		}
		if !d.At.Equal(now) {
			t.Errorf("%d %s: At = %v, want Request.Now %v", i, c.name, d.At, now)
		}
		if d.Lease.Held() {
			leases = append(leases, d.Lease)
		}
	}
	for _, l := range leases {
		release(t, s, l)
	}
}

// testInstantStoreClock checks At when the store reads its own clock
// (Request.Now zero): whatever that clock reads, each tier's state must
// be At + ResetAfter exactly. A GCRA tier of T = 1 min, burst 3, takes
// three requests, each moving its TAT on by exactly T, and rejects the
// fourth at that TAT; a fixed window aligned to the Unix epoch ends on a
// whole minute. An At read at another instant than the decision's (a
// moment after it, say) breaks both.
func testInstantStoreClock(t *testing.T, s limit.Store) {
	g := group(t)
	T := time.Minute
	gcra := policy("clock-gcra", 1, T, 3)
	fixed := window("clock-fixed", limit.FixedWindow, 3, time.Minute)
	for _, tc := range []struct {
		name  string
		tiers []limit.Tier
	}{
		{"gcra", []limit.Tier{{Policy: gcra, Key: "one"}}},
		{"gcra and fixed window", []limit.Tier{{Policy: gcra, Key: "mix"}, {Policy: fixed, Key: "mix"}}},
	} {
		var d limit.Decision
		var tat int64 // unix ns
		for i := range 4 {
			if err := s.Decide(context.Background(), &limit.Request{Group: g, Cost: 1, Tiers: tc.tiers}, &d); err != nil {
				t.Fatalf("%s %d: %v", tc.name, i, err)
			}
			if d.At.IsZero() {
				t.Fatalf("%s %d: At is zero", tc.name, i)
			}
			if want := i < 3; d.Allowed != want {
				t.Fatalf("%s %d: allowed = %v, want %v", tc.name, i, d.Allowed, want)
			}
			at := d.At.UnixNano()
			got := at + int64(d.Tiers[0].ResetAfter)
			switch {
			case i == 0:
				if got != at+int64(T) {
					t.Errorf("%s %d: At + ResetAfter = At + %v, want At + %v on a fresh tier", tc.name, i, d.Tiers[0].ResetAfter, T)
				}
			case i < 3:
				if got != tat+int64(T) {
					t.Errorf("%s %d: At + ResetAfter is %v after the previous TAT, want %v", tc.name, i, time.Duration(got-tat), T)
				}
			default:
				if got != tat {
					t.Errorf("%s %d: rejected at At + ResetAfter %v from the TAT, want at it", tc.name, i, time.Duration(got-tat))
				}
			}
			tat = got
			if len(d.Tiers) > 1 {
				if end := at + int64(d.Tiers[1].ResetAfter); end%int64(time.Minute) != 0 {
					t.Errorf("%s %d: fixed window ends %v past a whole minute, want on one", tc.name, i, time.Duration(end%int64(time.Minute)))
				}
			}
		}
	}
}

// testConcurrent hammers two tiers from many goroutines at instants spread
// over a second and checks that neither admits more than burst + rate·d.
func testConcurrent(t *testing.T, s limit.Store) {
	org := policy("conc-org", 50, time.Second, 20) // T = 20ms
	res := policy("conc-res", 10, time.Second, 5)  // T = 100ms
	g := group(t)
	const goroutines, perG = 16, 100
	span := time.Second
	var admitted atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d limit.Decision
			for i := range perG {
				// Instants increase per goroutine; goroutines interleave.
				at := epoch.Add(span * time.Duration(i) / perG).Add(time.Duration(w) * time.Microsecond)
				req := limit.Request{Now: at, Group: g, Cost: 1,
					Tiers: []limit.Tier{{Policy: org, Key: "o"}, {Policy: res, Key: "r"}}}
				if err := s.Decide(context.Background(), &req, &d); err != nil {
					failed.Store(err)
					return
				}
				if d.Allowed {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		t.Fatal(err)
	}
	// Every instant lies in [epoch, epoch+last]; GCRA admits at most
	// burst + last/T in a window that long. Instants reach the store out of
	// order across goroutines, which only ever makes GCRA stricter.
	last := span*(perG-1)/perG + goroutines*time.Microsecond
	bound := res.Burst + int64(last/res.Interval())
	if got := admitted.Load(); got > bound {
		t.Fatalf("admitted %d, bound %d: over-admission", got, bound)
	} else if got < res.Burst {
		t.Fatalf("admitted %d, fewer than the burst %d", got, res.Burst)
	}
}

// model is a reference GCRA for one tier, in plain integer arithmetic.
type model struct {
	tat int64
}

func (m *model) next(now, T, tau, cost int64) (int64, bool) {
	tat := max(m.tat, now)
	next := tat + cost*T
	return next, next-now <= tau
}

// testProperty replays random arrival sequences over two tiers against a
// reference model and checks every decision and the admission bound over
// every window.
func testProperty(t *testing.T, s limit.Store) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		rate := int64(1 + rng.IntN(50))
		a := policy(fmt.Sprintf("prop-a-%d", trial), rate, time.Second, int64(2+rng.IntN(10)))
		b := policy(fmt.Sprintf("prop-b-%d", trial), rate*3, time.Second, int64(2+rng.IntN(30)))
		g := fmt.Sprintf("%s/%d", group(t), trial)
		tiers := []limit.Tier{{Policy: a, Key: "k"}, {Policy: b, Key: "k"}}
		var ma, mb model
		var admits []int64
		now := epoch.UnixNano()
		for i := range 200 {
			now += int64(rng.ExpFloat64() * float64(time.Second) / float64(rate*2))
			cost := int64(1 + rng.IntN(2))
			d := decide(t, s, &limit.Request{Now: time.Unix(0, now), Group: g, Cost: cost, Tiers: tiers})
			na, oka := ma.next(now, int64(a.Interval()), int64(a.Tolerance()), cost)
			nb, okb := mb.next(now, int64(b.Interval()), int64(b.Tolerance()), cost)
			if want := oka && okb; d.Allowed != want {
				t.Fatalf("trial %d step %d: allowed=%v, model says %v", trial, i, d.Allowed, want)
			}
			if d.Allowed {
				ma.tat, mb.tat = na, nb
				for range cost {
					admits = append(admits, now)
				}
			} else {
				var want int64
				if !oka {
					want = na - now - int64(a.Tolerance())
				}
				if !okb {
					want = max(want, nb-now-int64(b.Tolerance()))
				}
				if int64(d.RetryAfter) != want {
					t.Fatalf("trial %d step %d: RetryAfter %v, model %v", trial, i, d.RetryAfter, time.Duration(want))
				}
			}
		}
		// Bound: in every window [admits[i], admits[j]] the admitted cost
		// is at most burst + rate·d for the tighter tier a.
		for i := range admits {
			for j := i; j < len(admits); j++ {
				d := admits[j] - admits[i]
				if n, bound := int64(j-i+1), a.Burst+d/int64(a.Interval()); n > bound {
					t.Fatalf("trial %d: %d admitted in %v, bound %d", trial, n, time.Duration(d), bound)
				}
			}
		}
	}
}
